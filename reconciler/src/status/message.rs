//! The layout of a commit message, independent of what it says: a summary
//! line, body paragraphs, list sections (`Heading:` then `  - item` lines)
//! and a final paragraph of `Key: value` trailers that
//! `git interpret-trailers --parse` reads. Building and parsing are pure.

/// Longest summary line we write; longer ones are cut with an ellipsis.
pub const SUMMARY_MAX: usize = 72;

/// Builds a message paragraph by paragraph.
#[derive(Debug, Default)]
pub struct MessageBuilder {
    summary: String,
    blocks: Vec<String>,
    trailers: Vec<(String, String)>,
}

impl MessageBuilder {
    pub fn new(summary: &str) -> Self {
        MessageBuilder {
            summary: truncate(&one_line(summary), SUMMARY_MAX),
            ..Default::default()
        }
    }

    /// A paragraph of prose, kept as given except that blank lines are
    /// dropped (a blank line would split it into two paragraphs).
    pub fn text(&mut self, text: &str) -> &mut Self {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect();
        if !lines.is_empty() {
            self.blocks.push(lines.join("\n"));
        }
        self
    }

    /// A list section; omitted when `items` is empty.
    pub fn list<S: AsRef<str>>(&mut self, heading: &str, items: &[S]) -> &mut Self {
        if items.is_empty() {
            return self;
        }
        let mut block = format!("{heading}:");
        for item in items {
            block.push_str("\n  - ");
            block.push_str(&one_line(item.as_ref()));
        }
        self.blocks.push(block);
        self
    }

    /// A trailer; the value is folded onto one line.
    pub fn trailer(&mut self, key: &str, value: impl AsRef<str>) -> &mut Self {
        debug_assert!(is_trailer_key(key), "bad trailer key {key}");
        self.trailers
            .push((key.to_string(), one_line(value.as_ref())));
        self
    }

    pub fn build(&self) -> String {
        let mut out = self.summary.clone();
        out.push('\n');
        for block in &self.blocks {
            out.push('\n');
            out.push_str(block);
            out.push('\n');
        }
        if !self.trailers.is_empty() {
            out.push('\n');
            for (key, value) in &self.trailers {
                out.push_str(key);
                out.push_str(": ");
                out.push_str(value);
                out.push('\n');
            }
        }
        out
    }
}

/// A message split into its parts.
#[derive(Debug, Default, PartialEq)]
pub struct ParsedMessage {
    pub summary: String,
    /// Body paragraphs (without the trailer paragraph), as lines.
    pub blocks: Vec<Vec<String>>,
    pub trailers: Vec<(String, String)>,
}

impl ParsedMessage {
    pub fn parse(message: &str) -> Self {
        let mut paragraphs: Vec<Vec<String>> = Vec::new();
        let mut current: Vec<String> = Vec::new();
        for line in message.lines() {
            if line.trim().is_empty() {
                if !current.is_empty() {
                    paragraphs.push(std::mem::take(&mut current));
                }
            } else {
                current.push(line.to_string());
            }
        }
        if !current.is_empty() {
            paragraphs.push(current);
        }
        if paragraphs.is_empty() {
            return ParsedMessage::default();
        }
        let mut first = paragraphs.remove(0);
        let summary = first.remove(0);
        if !first.is_empty() {
            // A summary paragraph of several lines: the rest is body.
            paragraphs.insert(0, first);
        }
        let mut trailers = Vec::new();
        if let Some(last) = paragraphs.last() {
            let parsed: Option<Vec<_>> = last.iter().map(|l| split_trailer(l)).collect();
            if let Some(parsed) = parsed {
                trailers = parsed;
                paragraphs.pop();
            }
        }
        ParsedMessage {
            summary,
            blocks: paragraphs,
            trailers,
        }
    }

    /// The first trailer named `key` (case-insensitive, as git compares).
    pub fn trailer(&self, key: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The items of the list section `heading`, or nothing.
    pub fn list(&self, heading: &str) -> Vec<String> {
        let head = format!("{heading}:");
        for block in &self.blocks {
            if block.first().map(String::as_str) != Some(head.as_str()) {
                continue;
            }
            return block[1..]
                .iter()
                .filter_map(|l| l.strip_prefix("  - ").map(str::to_string))
                .collect();
        }
        Vec::new()
    }
}

fn split_trailer(line: &str) -> Option<(String, String)> {
    let (key, value) = line.split_once(':')?;
    if !is_trailer_key(key) {
        return None;
    }
    Some((key.to_string(), value.trim().to_string()))
}

fn is_trailer_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Folds any run of whitespace (newlines included) into one space.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_summary_blocks_and_trailers() {
        let mut b = MessageBuilder::new("did a thing");
        b.text("Some prose.\n\nMore prose.")
            .list("Items", &["a", "b\nc"])
            .list::<&str>("Empty", &[])
            .trailer("Gitmesh-Event", "applied");
        assert_eq!(
            b.build(),
            "did a thing\n\nSome prose.\nMore prose.\n\nItems:\n  - a\n  - b c\n\nGitmesh-Event: applied\n"
        );
    }

    #[test]
    fn long_summaries_are_cut() {
        let long = "x".repeat(100);
        let msg = MessageBuilder::new(&long).build();
        assert_eq!(msg.lines().next().unwrap().chars().count(), SUMMARY_MAX);
        assert!(msg.starts_with("xxx") && msg.contains('…'));
    }

    #[test]
    fn parses_back_what_it_builds() {
        let mut b = MessageBuilder::new("sum");
        b.text("prose")
            .list("Items", &["a", "b"])
            .trailer("K-One", "1")
            .trailer("K-Two", "two words: here");
        let parsed = ParsedMessage::parse(&b.build());
        assert_eq!(parsed.summary, "sum");
        assert_eq!(parsed.list("Items"), ["a", "b"]);
        assert!(parsed.list("Other").is_empty());
        assert_eq!(parsed.trailer("k-one"), Some("1"));
        assert_eq!(parsed.trailer("K-Two"), Some("two words: here"));
        assert_eq!(parsed.blocks.len(), 2);
    }

    #[test]
    fn a_last_paragraph_of_prose_is_not_trailers() {
        let parsed = ParsedMessage::parse("sum\n\nJust: maybe\nnot a trailer line\n");
        assert!(parsed.trailers.is_empty());
        assert_eq!(parsed.blocks.len(), 1);
        assert_eq!(ParsedMessage::parse(""), ParsedMessage::default());
        assert!(ParsedMessage::parse("Key: value").trailers.is_empty());
    }
}
