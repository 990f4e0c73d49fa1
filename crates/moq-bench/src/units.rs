//! Parsing of `1mbit`, `500kbit` style bitrates (durations and sizes are `moq-units`).

/// Bits per second from `1mbit`, `500k`, `2.5Mbps`, `64000`.
pub(crate) fn parse_bitrate(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let number_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_end);
    let value: f64 = number.parse().map_err(|_| format!("invalid bitrate '{text}'"))?;
    let unit = unit.trim().trim_end_matches("ps").trim_end_matches("/s");
    let scale = match unit {
        "" | "b" | "bit" => 1.0,
        "k" | "kb" | "kbit" => 1e3,
        "m" | "mb" | "mbit" => 1e6,
        "g" | "gb" | "gbit" => 1e9,
        _ => return Err(format!("unknown bitrate unit in '{text}' (use kbit, mbit, gbit)")),
    };
    Ok((value * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates() {
        assert_eq!(parse_bitrate("1mbit"), Ok(1_000_000));
        assert_eq!(parse_bitrate("2.5Mbps"), Ok(2_500_000));
        assert_eq!(parse_bitrate("500k"), Ok(500_000));
        assert_eq!(parse_bitrate("64000"), Ok(64_000));
        assert_eq!(parse_bitrate("0"), Ok(0));
        assert!(parse_bitrate("fast").is_err());
        assert!(parse_bitrate("1xbit").is_err());
    }
}
