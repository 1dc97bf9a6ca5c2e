use super::*;

fn limits() -> Limits {
    Limits::default()
}

/// A client-side SYN_STREAM, compressed on `writer`'s (shared) zlib stream like a real peer.
fn syn_stream(writer: &mut FrameWriter, id: u32, fin: bool, headers: &[(&str, &str)]) -> Vec<u8> {
    writer.syn_stream(id, fin, headers)
}

async fn read_all(bytes: &[u8], limits: Limits) -> Vec<Result<Frame, FrameError>> {
    let mut reader = FrameReader::new(bytes, limits);
    let mut frames = Vec::new();
    loop {
        match reader.read().await {
            Err(FrameError::Closed) => return frames,
            Err(e) => {
                frames.push(Err(e));
                return frames;
            }
            Ok(f) => frames.push(Ok(f)),
        }
    }
}

#[tokio::test]
async fn decodes_successive_header_blocks_on_one_zlib_stream() {
    let mut peer = FrameWriter::new();
    let mut wire = syn_stream(&mut peer, 1, false, &[("streamtype", "error")]);
    wire.extend(syn_stream(
        &mut peer,
        3,
        true,
        &[("streamType", "stdout"), ("port", "80\08080")],
    ));
    wire.extend_from_slice(&FrameWriter::data_head(3, true, 2));
    wire.extend_from_slice(b"hi");
    let frames = read_all(&wire, limits()).await;
    assert_eq!(frames.len(), 3);
    match &frames[0] {
        Ok(Frame::SynStream {
            stream_id: 1,
            fin: false,
            headers,
        }) => {
            assert_eq!(headers.get("streamtype"), Some("error"));
        }
        other => panic!("{other:?}"),
    }
    match &frames[1] {
        Ok(Frame::SynStream {
            stream_id: 3,
            fin: true,
            headers,
        }) => {
            assert_eq!(headers.get("StreamType"), Some("stdout"));
            assert_eq!(headers.get("port"), Some("80"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&frames[2], Ok(Frame::Data { stream_id: 3, fin: true, data }) if &data[..] == b"hi")
    );
}

#[tokio::test]
async fn compressed_header_bomb_is_rejected() {
    let mut peer = FrameWriter::new();
    let huge = "a".repeat(200 * 1024);
    let wire = syn_stream(&mut peer, 1, false, &[("x", &huge)]);
    assert!(
        wire.len() < limits().max_header_block_bytes,
        "the bomb itself is small"
    );
    let frames = read_all(&wire, limits()).await;
    assert!(
        matches!(
            frames.last(),
            Some(Err(FrameError::HeaderBlockTooLarge { .. }))
        ),
        "{frames:?}"
    );
}

#[tokio::test]
async fn too_many_header_pairs_are_rejected() {
    let mut peer = FrameWriter::new();
    let names: Vec<String> = (0..100).map(|i| format!("h{i}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let wire = syn_stream(&mut peer, 1, false, &pairs);
    let frames = read_all(&wire, limits()).await;
    assert!(
        matches!(
            frames.last(),
            Some(Err(FrameError::TooManyHeaders { limit: 64 }))
        ),
        "{frames:?}"
    );
}

#[tokio::test]
async fn oversized_frames_are_rejected_from_the_length_field() {
    // 16 MiB - 1 claimed, nothing sent: rejected without reading or allocating the payload.
    let frames = read_all(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff], limits()).await;
    assert!(
        matches!(frames.last(), Some(Err(FrameError::TooLong { .. }))),
        "{frames:?}"
    );
    let frames = read_all(&[0x80, 0x03, 0, 1, 0, 0x01, 0, 0], limits()).await;
    assert!(
        matches!(frames.last(), Some(Err(FrameError::TooLong { .. }))),
        "{frames:?}"
    );
}

#[tokio::test]
async fn other_versions_and_truncated_frames_are_rejected() {
    let frames = read_all(&control_v2(), limits()).await;
    assert!(
        matches!(frames.last(), Some(Err(FrameError::Version(2)))),
        "{frames:?}"
    );
    // A PING with a 2-byte payload.
    let frames = read_all(&[0x80, 0x03, 0, 6, 0, 0, 0, 2, 0, 1], limits()).await;
    assert!(
        matches!(frames.last(), Some(Err(FrameError::Malformed("PING")))),
        "{frames:?}"
    );
    // A frame cut short by the end of the connection is an I/O error, not a frame.
    let frames = read_all(&[0, 0, 0, 1, 0, 0, 0, 9, 1, 2], limits()).await;
    assert!(
        matches!(frames.last(), Some(Err(FrameError::Io(_)))),
        "{frames:?}"
    );
}

fn control_v2() -> Vec<u8> {
    vec![0x80, 0x02, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]
}

#[test]
fn header_pairs_are_bounds_checked() {
    // Claims one pair, then a name length beyond the block.
    let block = [0, 0, 0, 1, 0, 0, 0, 200, b'a'];
    assert!(matches!(
        parse_pairs(&block, 64),
        Err(FrameError::HeaderBlock(_))
    ));
    // Empty names are invalid.
    let block = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(matches!(
        parse_pairs(&block, 64),
        Err(FrameError::HeaderBlock("empty header name"))
    ));
}

#[test]
fn writes_frames_in_spdy3_layout() {
    assert_eq!(
        FrameWriter::ping(7),
        [0x80, 0x03, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]
    );
    assert_eq!(
        FrameWriter::rst_stream(5, 3),
        [0x80, 0x03, 0, 3, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 3]
    );
    assert_eq!(
        FrameWriter::goaway(9, 0),
        [0x80, 0x03, 0, 7, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0]
    );
    assert_eq!(
        FrameWriter::data_head(3, true, 0x012345),
        [0, 0, 0, 3, 1, 0x01, 0x23, 0x45]
    );
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// A valid client byte stream to mutate: two SYN_STREAMs sharing the zlib stream, data, a
    /// ping and a reset.
    fn seed() -> Vec<u8> {
        let mut peer = FrameWriter::new();
        let mut wire = syn_stream(
            &mut peer,
            1,
            false,
            &[("streamtype", "error"), ("port", "80")],
        );
        wire.extend(syn_stream(
            &mut peer,
            3,
            false,
            &[("streamtype", "data"), ("requestid", "0")],
        ));
        wire.extend_from_slice(&FrameWriter::data_head(3, false, 4));
        wire.extend_from_slice(b"data");
        wire.extend(FrameWriter::ping(1));
        wire.extend(FrameWriter::rst_stream(3, 5));
        wire
    }

    fn small_limits() -> Limits {
        Limits {
            max_frame_bytes: 4096,
            max_header_block_bytes: 1024,
            max_header_pairs: 8,
            ..Limits::default()
        }
    }

    fn read_everything(bytes: &[u8]) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let frames = read_all(bytes, small_limits()).await;
            for frame in frames.iter().flatten() {
                if let Frame::Data { data, .. } = frame {
                    assert!(data.len() <= small_limits().max_frame_bytes);
                }
            }
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            read_everything(&bytes);
        }

        #[test]
        fn mutated_frames_never_panic(
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut wire = seed();
            for (at, byte) in flips {
                let i = at.index(wire.len());
                wire[i] = byte;
            }
            let end = cut.index(wire.len() + 1);
            read_everything(&wire[..end]);
        }
    }

    #[test]
    fn the_seed_parses_completely() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let frames = runtime.block_on(read_all(&seed(), small_limits()));
        assert_eq!(frames.len(), 5);
        assert!(frames.iter().all(Result::is_ok), "{frames:?}");
    }
}
