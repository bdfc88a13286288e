//! One module per subcommand, each with a clap `Args` and a `run` returning the exit code.

pub(crate) mod bench;
pub(crate) mod demo;
pub(crate) mod dlq;
pub(crate) mod enrich;
pub(crate) mod health;
pub(crate) mod intel;
pub(crate) mod intel_flow;
pub(crate) mod kb;
pub(crate) mod navigator;
pub(crate) mod serve;
pub(crate) mod ship;
pub(crate) mod siem;
pub(crate) mod token;

/// Exit code for an error: 64 for configuration and usage problems, 1 otherwise.
pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<attackmesh_runtime::Error>() {
        Some(e) => u8::try_from(e.exit_code()).unwrap_or(1),
        None => 1,
    }
}
