//! Building XML response bodies (S3's namespace, escaping, timestamps) and parsing request bodies.

use chrono::{DateTime, TimeZone, Utc};
use serde::de::DeserializeOwned;

use crate::error::{xml_escape, S3Result};
use crate::s3_error;

/// The S3 XML namespace.
pub const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// A small streaming XML writer for response bodies.
pub struct XmlWriter {
    out: String,
}

impl XmlWriter {
    /// Starts a document whose root element carries the S3 namespace.
    pub fn new(root: &str) -> Self {
        let mut out = String::with_capacity(512);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
        out.push_str(root);
        out.push_str(" xmlns=\"");
        out.push_str(S3_NS);
        out.push_str("\">");
        XmlWriter { out }
    }

    /// Opens an element.
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// Closes an element.
    pub fn close(&mut self, name: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// Writes `<name>escaped value</name>`.
    pub fn elem(&mut self, name: &str, value: impl AsRef<str>) -> &mut Self {
        self.open(name);
        self.out.push_str(&xml_escape(value.as_ref()));
        self.close(name)
    }

    /// Writes the element only when the value is present.
    pub fn opt(&mut self, name: &str, value: Option<impl AsRef<str>>) -> &mut Self {
        if let Some(v) = value {
            self.elem(name, v);
        }
        self
    }

    /// Closes the root and returns the document.
    pub fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.out
    }
}

/// S3's XML timestamp: `2009-10-12T17:50:30.000Z`.
pub fn iso8601_ms(ms: i64) -> String {
    to_datetime(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// HTTP-date for `Last-Modified`: `Wed, 12 Oct 2009 17:50:00 GMT`.
pub fn http_date(ms: i64) -> String {
    to_datetime(ms)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn to_datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Parses an XML request body into `T`; any error is `MalformedXML` with AWS's message.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> S3Result<T> {
    let text = std::str::from_utf8(body).map_err(|_| malformed())?;
    quick_xml::de::from_str(text).map_err(|_| malformed())
}

/// AWS's MalformedXML error.
pub fn malformed() -> crate::error::S3Error {
    s3_error!(
        MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_times() {
        let mut w = XmlWriter::new("LocationConstraint");
        w.elem("A", "x<y").opt("B", None::<&str>);
        assert_eq!(
            w.finish("LocationConstraint"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><A>x&lt;y</A></LocationConstraint>"
        );
        assert_eq!(iso8601_ms(1_255_369_830_000), "2009-10-12T17:50:30.000Z");
        assert_eq!(
            http_date(1_255_369_830_000),
            "Mon, 12 Oct 2009 17:50:30 GMT"
        );
    }
}
