//! Health that tells the truth: intel reports NOT_SERVING while its database cannot be used (the
//! real PostgreSQL of `scripts/with-postgres` stopped; the SQLite file moved away) and SERVING
//! again once it can, by itself. This binary stops the shared PostgreSQL, so its tests live
//! apart from the other PostgreSQL tests (cargo runs test binaries one at a time).

#![allow(clippy::unwrap_used)]

mod common;

use std::{process::Command, time::Duration};

use attackmesh_runtime::secret::Secret;
use attackmesh_testkit::wait_health;
use tonic_health::pb::health_check_response::ServingStatus;

/// Runs `$TEST_POSTGRES_CTL stop|start`; starts the server again on drop if a test stopped it.
struct PostgresCtl {
    ctl: String,
    stopped: bool,
}

impl PostgresCtl {
    fn run(&mut self, what: &str) {
        let status = Command::new(&self.ctl)
            .arg(what)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{} {what}: {status}", self.ctl);
        self.stopped = what == "stop";
    }
}

impl Drop for PostgresCtl {
    fn drop(&mut self) {
        if self.stopped {
            let _ = Command::new(&self.ctl).arg("start").status();
        }
    }
}

#[tokio::test]
async fn intel_is_not_serving_while_postgres_is_stopped_and_serving_when_it_is_back() {
    if common::postgres_store().await.is_none() {
        return;
    }
    let url = std::env::var("TEST_POSTGRES_URL").unwrap();
    let mut ctl = PostgresCtl {
        ctl: std::env::var("TEST_POSTGRES_CTL").expect("TEST_POSTGRES_CTL (scripts/with-postgres sets it)"),
        stopped: false,
    };
    let mut config = common::config();
    config.db = Some(Secret::new(url));
    config.db_probe_interval = Duration::from_millis(100);
    let intel = common::grpc::start(config).await;

    ctl.run("stop");
    wait_health(intel.addr, ServingStatus::NotServing).await;
    ctl.run("start");
    wait_health(intel.addr, ServingStatus::Serving).await;
}

#[tokio::test]
async fn intel_is_not_serving_while_its_sqlite_file_is_gone() {
    let mut config = common::config();
    config.db_probe_interval = Duration::from_millis(100);
    let intel = common::grpc::start(config).await;
    let path = std::path::PathBuf::from(intel.db.strip_prefix("sqlite:").unwrap());
    let aside = path.with_extension("aside");

    std::fs::rename(&path, &aside).unwrap();
    wait_health(intel.addr, ServingStatus::NotServing).await;
    std::fs::rename(&aside, &path).unwrap();
    wait_health(intel.addr, ServingStatus::Serving).await;
}
