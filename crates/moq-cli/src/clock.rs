//! The clock broadcast layout the moq-dev ecosystem uses: track `seconds`, one
//! group per minute whose first frame is `YYYY-MM-DD HH:MM:`, then one `SS`
//! frame per second. A subscriber prints `YYYY-MM-DD HH:MM:SS` lines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use moq_core::{Frame, TrackConsumer, TrackInfo, TrackProducer};

/// The clock's track name.
pub(crate) const TRACK: &str = "seconds";

/// The clock track's properties: millisecond timestamps.
pub(crate) fn info() -> TrackInfo {
    TrackInfo {
        priority: 0,
        max_latency: Duration::from_secs(60),
        timescale: 1000,
    }
}

/// Civil (UTC) date and time of a Unix timestamp in seconds.
pub(crate) fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (hour, minute, second) = ((rem / 3600) as u32, (rem / 60 % 60) as u32, (rem % 60) as u32);
    // Days since 1970-01-01 to a proleptic Gregorian date, counting eras of
    // 400 years (146097 days) from 0000-03-01 so leap days fall at year end.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, hour, minute, second)
}

/// `YYYY-MM-DD HH:MM:` for the minute containing `secs`.
pub(crate) fn minute_prefix(secs: u64) -> String {
    let (y, mo, d, h, mi, _) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:")
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Publish the clock into `track` until the track ends or nobody can read it.
pub(crate) async fn publish(track: TrackProducer) -> anyhow::Result<()> {
    loop {
        let start = now();
        let minute = start.as_secs() / 60;
        let mut group = track.create_group(minute)?;
        group.write(Frame {
            timestamp: start.as_millis() as u64,
            payload: Bytes::from(minute_prefix(start.as_secs())),
        });
        loop {
            let t = now();
            if t.as_secs() / 60 != minute {
                break;
            }
            group.write(Frame {
                timestamp: t.as_millis() as u64,
                payload: Bytes::from(format!("{:02}", t.as_secs() % 60)),
            });
            // Sleep to the next whole second.
            let next = Duration::from_secs(t.as_secs() + 1);
            tokio::time::sleep(next.saturating_sub(now())).await;
        }
        group.finish();
    }
}

/// Print the clock as `YYYY-MM-DD HH:MM:SS` lines, or stop after `count` lines.
pub(crate) async fn subscribe(track: TrackConsumer, count: Option<u64>) -> anyhow::Result<()> {
    let mut printed = 0u64;
    let mut frames = crate::frames::Frames::new(track);
    // The first frame of a group is the minute; the others are its seconds. A few
    // minutes are remembered: after a reconnect, the rest of a minute may arrive after
    // the next minute began.
    let mut minutes = std::collections::BTreeMap::new();
    while let Some((sequence, index, frame)) = frames.next().await? {
        let text = String::from_utf8_lossy(&frame.payload).into_owned();
        if index == 0 {
            minutes.insert(sequence, text);
            while minutes.len() > 4 {
                minutes.pop_first();
            }
            continue;
        }
        // A group joined mid-way, without its minute.
        let Some(minute) = minutes.get(&sequence) else {
            continue;
        };
        println!("{minute}{text}");
        printed += 1;
        if count.is_some_and(|c| printed >= c) {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_795_000_000), (2026, 11, 18, 11, 6, 40));
        assert_eq!(minute_prefix(1_795_000_000), "2026-11-18 11:06:");
    }
}
