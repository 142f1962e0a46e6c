//! The deployment files' commands run: the command line and environment of
//! every file in `deploy/` (the systemd unit's `ExecStart=` and
//! `Environment=`, the Containerfile's `ENTRYPOINT`, `CMD` and `ENV`, the
//! Kubernetes container's `args` and `env`) are given to the real `host`,
//! up to `--print-config`: a wrong flag or value fails here, not at
//! `systemctl start`.

mod common;

use std::process::Command;

use common::{host_bin, repo_root};
use yaml_rust2::{Yaml, YamlLoader};

/// A deployment's command: arguments after the binary, and environment.
#[derive(Debug)]
struct Launch {
    what: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The systemd unit: `ExecStart=` (after the binary) and `Environment=`.
fn systemd_unit(path: &str) -> Launch {
    let text = read(path);
    let value = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|line| line.trim().strip_prefix(key))
            .map(str::to_owned)
            .collect()
    };
    let exec: Vec<String> = value("ExecStart=")
        .first()
        .unwrap_or_else(|| panic!("{path} has no ExecStart="))
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(exec[0].ends_with("/host"), "{path} starts {}", exec[0]);
    let env = value("Environment=")
        .iter()
        .flat_map(|line| {
            line.split_whitespace()
                .filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect::<Vec<_>>()
        })
        .collect();
    Launch {
        what: path.to_owned(),
        args: exec[1..].to_vec(),
        env,
    }
}

/// The Containerfile: `ENTRYPOINT` and `CMD` (exec form) and `ENV` (with
/// its continuation lines), of the last stage.
fn containerfile(path: &str) -> Launch {
    let text = read(path).replace("\\\n", " ");
    let last_stage = text.rsplit("\nFROM ").next().unwrap_or_default();
    let instruction = |name: &str| {
        last_stage
            .lines()
            .filter_map(|line| line.trim().strip_prefix(name))
            .map(|rest| rest.trim().to_owned())
            .collect::<Vec<_>>()
    };
    let exec_form = |name: &str| -> Vec<String> {
        let found = instruction(name);
        let json = found.last().unwrap_or_else(|| panic!("{path} has no {name}"));
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}'s {name} is not the exec form: {e}"))
    };
    let entrypoint = exec_form("ENTRYPOINT ");
    assert!(entrypoint[0].ends_with("/host"), "{path} starts {}", entrypoint[0]);
    let mut args = entrypoint[1..].to_vec();
    args.extend(exec_form("CMD "));
    let env = instruction("ENV ")
        .iter()
        .flat_map(|line| {
            line.split_whitespace()
                .filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect::<Vec<_>>()
        })
        .collect();
    Launch {
        what: path.to_owned(),
        args,
        env,
    }
}

/// Every container of every Kubernetes document that runs the host's
/// image: its `command` (after the binary, if any), `args` and `env`.
fn kubernetes(path: &str) -> Vec<Launch> {
    let docs = YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut found = Vec::new();
    for doc in &docs {
        let containers = &doc["spec"]["template"]["spec"]["containers"];
        for container in containers.as_vec().into_iter().flatten() {
            let strings = |yaml: &Yaml| -> Vec<String> {
                yaml.as_vec()
                    .into_iter()
                    .flatten()
                    .map(|item| {
                        item.as_str()
                            .unwrap_or_else(|| panic!("{path}: {item:?} is not a string"))
                            .to_owned()
                    })
                    .collect()
            };
            let command = strings(&container["command"]);
            let mut args: Vec<String> = command.into_iter().skip(1).collect();
            args.extend(strings(&container["args"]));
            let env = container["env"]
                .as_vec()
                .into_iter()
                .flatten()
                .map(|var| {
                    let name = var["name"].as_str().unwrap_or_default().to_owned();
                    let value = var["value"].as_str().unwrap_or_default().to_owned();
                    (name, value)
                })
                .collect();
            found.push(Launch {
                what: format!("{path}, container {}", container["name"].as_str().unwrap_or("?")),
                args,
                env,
            });
        }
    }
    assert!(!found.is_empty(), "{path} runs no container");
    found
}

#[test]
fn every_deployment_file_starts_host_with_flags_and_values_it_takes() {
    let mut launches = vec![
        systemd_unit("deploy/host.service"),
        containerfile("deploy/Containerfile"),
    ];
    launches.extend(kubernetes("deploy/kubernetes/host.yaml"));
    for launch in &launches {
        let output = Command::new(host_bin())
            .args(&launch.args)
            .arg("--print-config")
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run host");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{}: `host {} --print-config` failed ({}):\n{stderr}",
            launch.what,
            launch.args.join(" "),
            output.status
        );
        // The file's settings are the ones in force.
        let config = String::from_utf8_lossy(&output.stdout);
        for (name, value) in &launch.env {
            if let Some(key) = name.strip_prefix("HOST_") {
                let key = key.to_ascii_lowercase();
                let plain = value.trim_matches('"');
                assert!(
                    config.lines().any(|l| l.starts_with(&key) && l.contains(plain)),
                    "{}: {name}={value} is not in force:\n{config}",
                    launch.what
                );
            }
        }
    }
}

#[test]
fn a_wrong_flag_in_a_deployment_file_would_fail_this_test() {
    // The unit's old mistake, `--plugin-dirs`, is refused by the host.
    let output = Command::new(host_bin())
        .args(["--plugin-dirs", "/opt/host/plugins", "--print-config"])
        .env_clear()
        .output()
        .expect("run host");
    assert_eq!(output.status.code(), Some(2));
}
