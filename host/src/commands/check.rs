//! `host check LIB:SYMBOL`: loads and checks an app and prints what was
//! found. Loading runs the library's constructors, which may crash or
//! hang, so the load happens in a throw-away child process (the same probe
//! the master uses before a swap) and this process reports its verdict.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Failure;
use crate::plugin::app_spec::AppSpec;
use crate::plugin::loader;
use crate::supervisor::probe;

/// Checks `spec` in a child process (or, with `in_process`, here).
pub fn run(spec: &AppSpec, plugin_dirs: &[PathBuf], timeout: Duration, in_process: bool) -> Result<u8, Failure> {
    if in_process {
        return check_here(spec, plugin_dirs).map(|()| 0);
    }
    let exe = std::env::current_exe().map_err(|e| Failure::internal(format!("cannot find our own binary: {e}")))?;
    let probe = probe::run_blocking(&exe, spec, plugin_dirs, timeout)?;
    eprint!("{}", probe.log);
    print!("{}", probe.verdict?);
    Ok(0)
}

fn check_here(spec: &AppSpec, plugin_dirs: &[PathBuf]) -> Result<(), Failure> {
    let loaded = loader::load(spec, plugin_dirs).map_err(Failure::input)?;
    println!("ok: {spec}");
    println!("  library:           {}", loaded.path.display());
    println!("  symbol:            {}", spec.symbol);
    println!("  interface (app):   {}", loaded.app.interface());
    println!(
        "  interfaces (host): plugin-api {}, C interface {}",
        plugin_api::host::interface_version(),
        plugin_api::host::c_interface_version()
    );
    println!("  load + check time: {:.2} ms", loaded.load_time.as_secs_f64() * 1e3);
    Ok(())
}
