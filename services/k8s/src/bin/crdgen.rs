//! Prints the `SmppAccount` CustomResourceDefinition as YAML:
//! `cargo run -p smsc-k8s --bin crdgen > helm/smsc/crds/smppaccount.yaml`.

use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    match smsc_k8s::crd::crd_yaml() {
        Ok(yaml) => match std::io::stdout().write_all(yaml.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crdgen: {e}");
                ExitCode::from(74)
            }
        },
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::from(70)
        }
    }
}
