//! The victim: an ordinary publisher and an ordinary viewer of another broadcast
//! (`anon/victim`, track `video`) through the relay under attack, counting every
//! frame end to end with the `moq_core` client API.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use moq_core::{
    BroadcastProducer, Frame, Origin, TrackInfo, TrackProducer,
    model::cache::Cache,
    session::{self, Config as SessionConfig},
};
use moq_native::{adapter::MoqSession, client};
use moq_proto::{Hops, Path};
use tokio::{sync::watch, task::JoinHandle};

use crate::harness::{Relay, VictimReport};

/// Frames per victim group.
pub(crate) const FRAMES: u64 = 5;
/// Time between two victim groups.
const PERIOD: Duration = Duration::from_millis(100);

/// A publisher and a viewer of `anon/victim`.
pub(crate) struct Victim {
    stop: watch::Sender<bool>,
    /// Returns how many groups it wrote and the publication, so the broadcast outlives
    /// the count (ending it right after the last group could race that group through
    /// the relay: an unannounced broadcast's group streams are stopped).
    writer: JoinHandle<(u64, Box<dyn Send>)>,
    reader: JoinHandle<()>,
    received: Arc<Mutex<BTreeMap<u64, Vec<Frame>>>>,
    _publisher: MoqSession,
    _viewer: MoqSession,
    _clients: (client::Client, client::Client),
}

fn frame(group: u64, index: u64) -> Frame {
    let mut payload = format!("victim:{group}:{index}:").into_bytes();
    payload.resize(200, b'v');
    Frame {
        timestamp: group * 1_000_000 + index * 20_000,
        payload: Bytes::from(payload),
    }
}

async fn connect(
    client: &client::Client,
    relay: &Relay,
    publish: Option<Origin>,
    consume: Option<Origin>,
) -> MoqSession {
    let url = relay.url("moqt", "anon");
    let connected = client.connect(&url).await.expect("victim connects");
    let mut config = SessionConfig::new(connected.version.lite().expect("moq-lite"));
    config.publish = publish;
    config.consume = consume;
    config.setup.path = connected.setup_path(&url);
    let session = MoqSession::new(connected.session, connected.transport);
    tokio::spawn(session::run(session.clone(), config));
    session
}

impl Victim {
    /// Connect both to `relay` from `bind`, and wait until the viewer has its first groups.
    pub(crate) async fn start(relay: &Relay, bind: IpAddr) -> Self {
        match Self::start_split(relay, relay, bind).await {
            Ok(victim) => victim,
            Err(_) => panic!("the victim viewer receives nothing"),
        }
    }

    /// Publish through `publish`, watch through `view` (both from `bind`); an error
    /// carries a victim that is still publishing but whose viewer got nothing in 10 s.
    pub(crate) async fn start_split(publish: &Relay, view: &Relay, bind: IpAddr) -> Result<Self, Box<Self>> {
        let client = publish.client(bind, &[]);
        let origin = Origin::default();
        let broadcast = BroadcastProducer::new(Cache::default());
        let track = broadcast.create_track(TrackProducer::with_info(
            "video",
            TrackInfo::default(),
            Cache::default(),
        ));
        let publication = origin.publish(
            Path::new("victim").expect("path"),
            broadcast.consume(),
            Hops::new(),
        );
        let publisher = connect(&client, publish, Some(origin.clone()), None).await;
        let (stop, mut stopped) = watch::channel(false);
        let writer = tokio::spawn(async move {
            let keep: Box<dyn Send> = Box::new((publication, broadcast));
            let mut ticker = tokio::time::interval(PERIOD);
            let mut seq = 0u64;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.wait_for(|s| *s) => return (seq, keep),
                }
                let Ok(mut group) = track.create_group(seq) else {
                    return (seq, keep);
                };
                for i in 0..FRAMES {
                    group.write(frame(seq, i));
                }
                group.finish();
                seq += 1;
            }
        });

        let viewer_origin = Origin::default();
        let viewer_client = view.client(bind, &[]);
        let viewer = connect(&viewer_client, view, None, Some(viewer_origin.clone())).await;
        let received: Arc<Mutex<BTreeMap<u64, Vec<Frame>>>> = Arc::default();
        let reader = tokio::spawn({
            let received = received.clone();
            async move {
                let Some(consumer) = viewer_origin
                    .wait_for(&Path::new("victim").expect("path"), Duration::from_secs(10))
                    .await
                else {
                    return;
                };
                let Ok(mut track) = consumer.subscribe("video") else {
                    return;
                };
                let mut groups = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        group = track.next_group() => {
                            let Ok(Some(mut group)) = group else { break };
                            let received = received.clone();
                            groups.spawn(async move {
                                let seq = group.sequence();
                                received.lock().expect("lock").insert(seq, Vec::new());
                                while let Ok(Some(frame)) = group.next_frame().await {
                                    if let Some(frames) = received.lock().expect("lock").get_mut(&seq) {
                                        frames.push(frame);
                                    }
                                }
                            });
                        }
                        Some(_) = groups.join_next() => {}
                    }
                }
                while groups.join_next().await.is_some() {}
            }
        });
        let victim = Self {
            stop,
            writer,
            reader,
            received,
            _publisher: publisher,
            _viewer: viewer,
            _clients: (client, viewer_client),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while victim.complete_groups() < 2 {
            if Instant::now() > deadline {
                return Err(Box::new(victim));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(victim)
    }

    fn complete_groups(&self) -> usize {
        let received = self.received.lock().expect("lock");
        received.values().filter(|f| f.len() as u64 == FRAMES).count()
    }

    /// Stop publishing, give the last groups up to 10 s to arrive, and count.
    pub(crate) async fn finish(self) -> VictimReport {
        // A little more after the attack: the relay must still serve.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = self.stop.send(true);
        let (written, _publication) = match self.writer.await {
            Ok((written, publication)) => (written, Some(publication)),
            Err(_) => (0, None),
        };
        let last = written.saturating_sub(1);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done = self
                .received
                .lock()
                .expect("lock")
                .get(&last)
                .is_some_and(|f| f.len() as u64 == FRAMES);
            if done || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.reader.abort();
        let received = self.received.lock().expect("lock");
        let Some(&first) = received.keys().next() else {
            // The viewer never got anything: everything written was lost.
            return VictimReport {
                groups: written,
                expected: written * FRAMES,
                received: 0,
                lost: written * FRAMES,
            };
        };
        let groups = written.saturating_sub(first);
        let mut intact = 0;
        for seq in first..written {
            if let Some(frames) = received.get(&seq) {
                intact += (0..FRAMES)
                    .filter(|&i| frames.get(i as usize) == Some(&frame(seq, i)))
                    .count() as u64;
            }
        }
        let expected = groups * FRAMES;
        VictimReport {
            groups,
            expected,
            received: intact,
            lost: expected - intact,
        }
    }
}
