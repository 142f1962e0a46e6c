//! `c/host_app.h` and its Rust mirror (`plugin_api::abi::c`) agree: the
//! header is compiled by the system's C compiler (and, where there is one,
//! its C++ compiler) with every warning an error, and a program built from
//! it prints the size and offset of every struct and field, which must be
//! the mirror's. This is the C interface's layout check (abi_stable checks
//! only the Rust interface).

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use plugin_api::abi::c;

/// `(name, size or offset)` for every struct and field, as the Rust mirror
/// lays them out; the C program prints the same names.
fn rust_layout() -> Vec<(&'static str, usize)> {
    macro_rules! layout {
        ($($c_type:literal $rust:ty { $($c_field:literal $field:ident),* })*) => {
            vec![$(
                ($c_type, size_of::<$rust>()),
                $(($c_field, offset_of!($rust, $field)),)*
            )*]
        };
    }
    layout! {
        "host_app_str" c::Str { "host_app_str.ptr" ptr, "host_app_str.len" len }
        "host_app_header" c::Header { "host_app_header.name" name, "host_app_header.value" value }
        "host_app_version" c::Version { "host_app_version.major" major, "host_app_version.minor" minor }
        "host_app_request" c::Request {
            "host_app_request.size" size, "host_app_request.flags" flags, "host_app_request.method" method,
            "host_app_request.script_name" script_name, "host_app_request.path_info" path_info,
            "host_app_request.query_string" query_string, "host_app_request.server_name" server_name,
            "host_app_request.server_port" server_port, "host_app_request.server_protocol" server_protocol,
            "host_app_request.remote_addr" remote_addr, "host_app_request.remote_port" remote_port,
            "host_app_request.url_scheme" url_scheme, "host_app_request.headers" headers,
            "host_app_request.headers_len" headers_len, "host_app_request.extra" extra,
            "host_app_request.extra_len" extra_len
        }
        "host_app_gateway" c::Gateway {
            "host_app_gateway.size" size, "host_app_gateway.start_response" start_response,
            "host_app_gateway.write" write, "host_app_gateway.read_body" read_body,
            "host_app_gateway.send_file" send_file, "host_app_gateway.last_error" last_error
        }
        "host_app_body" c::Body {
            "host_app_body.ptr" ptr, "host_app_body.len" len, "host_app_body.release" release,
            "host_app_body.owner" owner
        }
        "host_app_stream" c::Stream {
            "host_app_stream.state_owned" state_owned, "host_app_stream.next" next, "host_app_stream.close" close
        }
        "host_app_response" c::Response {
            "host_app_response.size" size, "host_app_response.kind" kind, "host_app_response.body" body,
            "host_app_response.stream" stream
        }
        "host_app_services" c::Services {
            "host_app_services.size" size, "host_app_services.max_level" max_level, "host_app_services.log" log
        }
        "host_app" c::AppDescriptor {
            "host_app.size" size, "host_app.magic" magic, "host_app.init" init, "host_app.call" call
        }
    }
}

/// The constants both sides name.
fn rust_constants() -> Vec<(&'static str, i128)> {
    vec![
        ("HOST_APP_VERSION_MAJOR", c::VERSION_MAJOR.into()),
        ("HOST_APP_VERSION_MINOR", c::VERSION_MINOR.into()),
        ("HOST_APP_MAGIC", c::MAGIC.into()),
        ("HOST_APP_OK", c::OK.into()),
        ("HOST_APP_ERR_ARGUMENT", c::ERR_ARGUMENT.into()),
        ("HOST_APP_ERR_REFUSED", c::ERR_REFUSED.into()),
        ("HOST_APP_MAX_STATUS_LEN", c::MAX_STATUS_LEN as i128),
        ("HOST_APP_MAX_HEADERS", c::MAX_HEADERS as i128),
        ("HOST_APP_MAX_HEADER_LEN", c::MAX_HEADER_LEN as i128),
        ("HOST_APP_MAX_IO_LEN", c::MAX_IO_LEN as i128),
        ("HOST_APP_MULTITHREAD", c::MULTITHREAD.into()),
        ("HOST_APP_MULTIPROCESS", c::MULTIPROCESS.into()),
        ("HOST_APP_RUN_ONCE", c::RUN_ONCE.into()),
        ("HOST_APP_RESPONSE_EMPTY", c::RESPONSE_EMPTY.into()),
        ("HOST_APP_RESPONSE_BODY", c::RESPONSE_BODY.into()),
        ("HOST_APP_RESPONSE_STREAM", c::RESPONSE_STREAM.into()),
    ]
}

/// A C program that prints every entry of `layout` and `constants`.
fn c_program(layout: &[(&str, usize)], constants: &[(&str, i128)]) -> String {
    let mut program = String::from("#include <stddef.h>\n#include <stdio.h>\n#include \"host_app.h\"\n");
    program.push_str("HOST_APP_INTERFACE();\nint main(void) {\n");
    for (name, _) in layout {
        let expr = match name.split_once('.') {
            Some((ty, field)) => format!("offsetof({ty}, {field})"),
            None => format!("sizeof({name})"),
        };
        program.push_str(&format!("    printf(\"{name} %zu\\n\", (size_t)({expr}));\n"));
    }
    for (name, _) in constants {
        program.push_str(&format!("    printf(\"{name} %lld\\n\", (long long)({name}));\n"));
    }
    program.push_str("    return 0;\n}\n");
    program
}

fn header_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("c")
}

/// Compiles `source` (as `file_name`) with `compiler` and runs it; `None`
/// if the compiler is missing.
fn compile_and_run(compiler: &str, flags: &[&str], file_name: &str, source: &str) -> Option<String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("c_header_{compiler}"));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let source_path = dir.join(file_name);
    std::fs::write(&source_path, source).expect("write the program");
    let exe = dir.join("layout");
    let built = match Command::new(compiler)
        .args(flags)
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(header_dir())
        .arg(&source_path)
        .arg("-o")
        .arg(&exe)
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        other => other.unwrap_or_else(|e| panic!("cannot run {compiler}: {e}")),
    };
    assert!(
        built.status.success(),
        "{compiler} rejects host_app.h:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let ran = Command::new(&exe).output().expect("run the layout program");
    assert!(ran.status.success());
    Some(String::from_utf8(ran.stdout).expect("ASCII"))
}

fn assert_agrees(compiler: &str, printed: &str) {
    let expected: Vec<String> = rust_layout()
        .iter()
        .map(|(name, value)| format!("{name} {value}"))
        .chain(rust_constants().iter().map(|(name, value)| format!("{name} {value}")))
        .collect();
    let printed: Vec<&str> = printed.lines().collect();
    assert_eq!(printed.len(), expected.len(), "{compiler}");
    for (c_line, rust_line) in printed.iter().zip(&expected) {
        assert_eq!(*c_line, rust_line, "{compiler} and the Rust mirror disagree");
    }
}

#[test]
fn the_header_compiles_as_c_and_matches_the_rust_mirror() {
    let program = c_program(&rust_layout(), &rust_constants());
    let printed = compile_and_run("cc", &["-std=c11"], "layout.c", &program).expect("a C compiler (`cc`) is needed");
    assert_agrees("cc", &printed);
}

#[test]
fn the_header_compiles_as_cpp_and_matches_the_rust_mirror() {
    let program = c_program(&rust_layout(), &rust_constants());
    match compile_and_run("c++", &["-std=c++17"], "layout.cpp", &program) {
        Some(printed) => assert_agrees("c++", &printed),
        None => eprintln!("skipped: no C++ compiler (`c++`) on this machine"),
    }
}
