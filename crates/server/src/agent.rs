//! A browser's `User-Agent` in words for the account page's sessions: "Firefox on Linux",
//! "Safari on an iPhone", "curl". Only the browser and the system are named; the raw string
//! stays in the title for whoever wants it.

/// The browser and the system an agent string names, in words ("a browser" / "an unknown
/// system" when it says neither).
pub fn describe(agent: &str) -> String {
    let has = |needle: &str| agent.contains(needle);
    let browser = if agent.trim().is_empty() {
        return "an unknown browser".to_owned();
    } else if has("Edg/") {
        "Edge"
    } else if has("OPR/") || has("Opera") {
        "Opera"
    } else if has("Firefox/") {
        "Firefox"
    } else if has("Chromium/") {
        "Chromium"
    } else if has("Chrome/") || has("CriOS/") {
        "Chrome"
    } else if has("Safari/") {
        "Safari"
    } else if let Some(tool) =
        ["curl", "Wget", "python-requests", "reqwest"].iter().find(|t| agent.starts_with(**t))
    {
        return (*tool).to_owned();
    } else {
        "a browser"
    };
    let system = if has("iPhone") {
        "an iPhone"
    } else if has("iPad") {
        "an iPad"
    } else if has("Android") {
        "Android"
    } else if has("Windows") {
        "Windows"
    } else if has("Mac OS X") || has("Macintosh") {
        "macOS"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Linux") {
        "Linux"
    } else {
        "an unknown system"
    };
    format!("{browser} on {system}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_read_as_browser_and_system() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox on Linux"),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari on an iPhone",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on macOS",
            ),
            ("curl/8.5.0", "curl"),
            ("", "an unknown browser"),
            ("something else", "a browser on an unknown system"),
        ];
        for (agent, words) in cases {
            assert_eq!(describe(agent), words, "{agent}");
        }
    }
}
