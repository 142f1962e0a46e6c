//! [`HeaderList`]: name/value pairs that own their text, for what outlives
//! the request it came from (an async request's environ, a connection's
//! client-certificate variables). The text is one buffer, written once; the
//! pairs point into it.

use std::ops::Range;

use plugin_api::host::Header;

/// Name/value pairs owning their text.
#[derive(Debug, Default)]
pub struct HeaderList {
    /// Every name and value, one after the other; never changed once built
    /// (held for the pairs, which point into it).
    _text: String,
    /// The pairs, pointing into `text`'s heap buffer (which stays where it
    /// is when the list moves); handed out only borrowed from `self`.
    pairs: Vec<Header<'static>>,
}

impl HeaderList {
    /// A copy of `pairs`.
    pub fn copy_of<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> HeaderList {
        let len = pairs.clone().into_iter().map(|(n, v)| n.len() + v.len()).sum();
        let mut text = String::with_capacity(len);
        let mut spans: Vec<(Range<usize>, Range<usize>)> = Vec::new();
        for (name, value) in pairs {
            let name = push(&mut text, name);
            let value = push(&mut text, value);
            spans.push((name, value));
        }
        let pairs = spans
            .into_iter()
            .map(|(name, value)| {
                // SAFETY: `text` is complete and never changed again; its heap
                // buffer lives as long as this list, which hands the pairs
                // out only with its own lifetime.
                let (name, value) = unsafe { (extend(&text[name]), extend(&text[value])) };
                Header::new(name, value)
            })
            .collect();
        HeaderList { _text: text, pairs }
    }

    /// The pairs.
    pub fn pairs(&self) -> &[Header<'_>] {
        &self.pairs
    }
}

/// Appends `part` to `text`; where it went.
fn push(text: &mut String, part: &str) -> Range<usize> {
    let start = text.len();
    text.push_str(part);
    start..text.len()
}

/// `part` with the lifetime of the buffer it lies in.
///
/// # Safety
/// `part` lies in a `String` that is never changed again and outlives every
/// use of the result.
unsafe fn extend(part: &str) -> &'static str {
    // SAFETY: the caller's promise.
    unsafe { std::mem::transmute::<&str, &'static str>(part) }
}
