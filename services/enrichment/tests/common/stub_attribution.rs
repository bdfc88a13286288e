//! Runs a stand-in attribution service (any `AttributionService`) the way the real one runs:
//! behind the runtime's authentication, reporting SERVING.

use std::net::SocketAddr;

use attackmesh::proto::attribution_service_server::{AttributionService, AttributionServiceServer};

use super::{Proc, runtime, until_killed};

pub fn start_stub_attribution<T: AttributionService>(addr: SocketAddr, service: T) -> Proc {
    Proc::start(addr, false, move |listener, _, killed| async move {
        let server = attackmesh_testkit::tokens::server(&runtime())
            .await
            .add_service(AttributionServiceServer::new(service))
            .await;
        server.health().serving::<AttributionServiceServer<T>>().await;
        until_killed(killed, |graceful| async move {
            server
                .serve(listener, async {
                    let _ = graceful.await;
                })
                .await
                .unwrap();
        })
        .await;
    })
}
