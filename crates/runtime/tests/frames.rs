//! The HTTP/2 frame size a runtime gRPC server accepts, as its SETTINGS frame tells a caller:
//! [`MAX_FRAME`] unless the service sets its own.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use attackmesh_runtime::{auth::Role, client::MAX_FRAME, server::GrpcServer};
use attackmesh_testkit::tokens::Tokens;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

/// `SETTINGS_MAX_FRAME_SIZE` (RFC 9113, section 6.5.2).
const MAX_FRAME_SIZE: u16 = 0x5;

/// Serves `server`, opens an HTTP/2 connection to it and returns the settings of its first
/// frame, which must be SETTINGS.
async fn advertised(server: GrpcServer) -> Vec<(u16, u32)> {
    let (listener, addr) = attackmesh_testkit::bind().await;
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(listener, stop.clone().cancelled_owned()));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The client preface and an empty SETTINGS frame.
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    stream.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).await.unwrap();
    let settings = tokio::time::timeout(Duration::from_secs(20), async {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(head[3], 0x4, "the server's first frame is SETTINGS");
        assert_eq!(head[4] & 0x1, 0, "and not an acknowledgement");
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.unwrap();
        payload
            .chunks_exact(6)
            .map(|s| {
                (
                    u16::from_be_bytes([s[0], s[1]]),
                    u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
                )
            })
            .collect()
    })
    .await
    .expect("the server sent its settings");
    stop.cancel();
    settings
}

fn max_frame(settings: &[(u16, u32)]) -> Option<u32> {
    settings.iter().find(|(id, _)| *id == MAX_FRAME_SIZE).map(|(_, v)| *v)
}

#[tokio::test]
async fn a_server_accepts_the_runtime_frame_size_unless_its_service_sets_one() {
    let tokens = Tokens::new(&[("caller", Role::Admin)]);
    let settings = advertised(tokens.server().await).await;
    assert_eq!(max_frame(&settings), Some(MAX_FRAME), "{settings:?}");
    const { assert!(MAX_FRAME > 16 * 1024, "larger than HTTP/2's default") };

    let settings = advertised(tokens.server().await.max_frame(64 * 1024)).await;
    assert_eq!(max_frame(&settings), Some(64 * 1024), "{settings:?}");
}

#[test]
#[should_panic(expected = "HTTP/2 frames are 16 KiB to 16 MiB - 1")]
fn a_frame_size_http2_does_not_allow_is_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let tokens = Tokens::new(&[("caller", Role::Admin)]);
    let server = runtime.block_on(tokens.server());
    let _ = server.max_frame(1024);
}
