//! The default command: resolve the settings, load every app, bind the
//! listeners, and serve until stopped.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cli::{Fatal, ServeArgs};
use crate::config::{FileConfig, Settings};
use crate::loader::{self, LoadedApp};
use crate::server::access_log::AccessLog;
use crate::server::connection::Listener;
use crate::server::router::{MountedApp, Router};
use crate::server::static_files::StaticSite;
use crate::server::{self, ServerState};
use crate::signals::Shutdown;

/// Serves what `args` (and its config file) describe, until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), Fatal> {
    let file = match &args.config {
        Some(path) => FileConfig::read(path).map_err(Fatal::usage)?,
        None => FileConfig::default(),
    };
    let settings = args.settings(file).map_err(Fatal::usage)?;
    if args.print_config {
        let text = toml::to_string_pretty(&settings.to_config()).map_err(|e| Fatal::usage(e.to_string()))?;
        print!("{text}");
        return Ok(());
    }
    let state = Arc::new(prepare(&settings)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("host-io")
        .build()
        .map_err(|e| Fatal {
            code: 1,
            message: format!("cannot start the runtime: {e}"),
        })?;
    runtime.block_on(async {
        let listeners = settings
            .binds
            .iter()
            .map(Listener::bind)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Fatal::usage)?;
        let shutdown = Shutdown::install().map_err(|e| Fatal {
            code: 1,
            message: format!("cannot handle signals: {e}"),
        })?;
        for listener in &listeners {
            log::info!("serving on {}", listener.url());
            println!("Serving on {}", listener.url());
        }
        server::serve(listeners, state, shutdown).await;
        Ok(())
    })
}

/// Loads the apps and opens the static site: everything that can fail
/// because of bad input fails here, before a socket is bound.
fn prepare(settings: &Settings) -> Result<ServerState, Fatal> {
    let mut loaded: HashMap<String, Arc<LoadedApp>> = HashMap::new();
    let mut mounts = Vec::new();
    for mount in &settings.mounts {
        let key = mount.app.to_string();
        let app = match loaded.get(&key) {
            Some(app) => app.clone(),
            None => {
                let app = Arc::new(loader::load(&mount.app, &settings.plugin_dirs).map_err(Fatal::usage)?);
                log::info!(
                    "loaded {} from {} (plugin-api {}, {:.2} ms)",
                    mount.app,
                    app.path.display(),
                    app.app.interface_version(),
                    app.load_time.as_secs_f64() * 1e3
                );
                loaded.insert(key, app.clone());
                app
            }
        };
        mounts.push(MountedApp {
            prefix: mount.prefix.clone(),
            app,
        });
    }
    let site = match &settings.static_dir {
        Some(dir) if !settings.static_dir_explicit && !dir.exists() => {
            log::warn!(
                "no static folder at {}: serving apps only (pass --static-dir DIR)",
                dir.display()
            );
            None
        }
        Some(dir) => Some(StaticSite::new(dir).map_err(Fatal::usage)?),
        None => None,
    };
    if site.is_none() && mounts.is_empty() {
        return Err(Fatal::usage(
            "nothing to serve: name an app (LIB:SYMBOL) or a static folder (--static-dir DIR)",
        ));
    }
    Ok(ServerState {
        router: Router::new(mounts, site),
        limits: settings.limits.clone(),
        access_log: Arc::new(AccessLog::new(settings.access_log)),
    })
}
