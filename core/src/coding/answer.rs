//! Compressing an answer held in memory (dynamic routes, workers, listings) for the
//! request it answers. Files are compressed by their route, which knows their tags.

use super::{encode, AcceptEncoding, Coding, Compression};
use crate::http::response::{Body, Response};

/// What becomes of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Not a compressible answer (or already decided): sent as it is.
    AsIs,
    /// Compressible, sent as it is, with `Vary: Accept-Encoding`.
    Vary,
    /// Compressed with this coding (and `Vary`).
    Encode(Coding),
}

/// The plan for `response` to a request with `accept`: only a successful answer with
/// content, a compressible `Content-Type`, bytes in memory, no `Content-Encoding` or
/// `Vary: Accept-Encoding` yet and no opt-out is compressed.
pub(crate) fn plan(response: &Response, accept: &AcceptEncoding, settings: &Compression) -> Plan {
    let Body::Bytes(bytes) = &response.body else {
        return Plan::AsIs;
    };
    let eligible = settings.enabled
        && response.compress
        && (200..300).contains(&response.status)
        && response.status != 206
        && response.has_content()
        && field(response, "content-encoding").next().is_none()
        && !field(response, "vary").any(varies_on_encoding)
        && field(response, "content-type")
            .next()
            .is_some_and(super::is_compressible);
    if !eligible {
        return Plan::AsIs;
    }
    let big_enough = bytes.len() as u64 >= settings.min_size || accept.refuses_identity();
    match accept.choose(&Coding::ALL) {
        Some(coding) if big_enough => Plan::Encode(coding),
        _ => Plan::Vary,
    }
}

/// The values of the fields of `response` named `name`.
fn field<'a>(response: &'a Response, name: &'a str) -> impl Iterator<Item = &'a str> {
    response
        .fields
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Carries out `plan`. A strong or weak `ETag` gets the coding as a suffix, so each
/// representation has its own tag. An encoder error sends the answer as it was.
pub(crate) fn apply(mut response: Response, plan: Plan, settings: &Compression) -> Response {
    let coding = match plan {
        Plan::AsIs => return response,
        Plan::Vary => None,
        Plan::Encode(coding) => Some(coding),
    };
    if let (Some(coding), Body::Bytes(bytes)) = (coding, &response.body) {
        if let Ok(encoded) = encode(coding, &settings.levels, bytes) {
            response.body = Body::Bytes(encoded);
            for (name, value) in &mut response.fields {
                if name.eq_ignore_ascii_case("etag") {
                    *value = tag_for(value, coding);
                }
            }
            response
                .fields
                .push(("Content-Encoding".into(), coding.token().to_owned()));
        }
    }
    response
        .fields
        .push(("Vary".into(), "Accept-Encoding".to_owned()));
    response
}

/// The entity tag of the `coding` representation of the one tagged `tag`: the coding
/// token appended inside the quotes (`"3610a686"` → `"3610a686-br"`).
pub(crate) fn tag_for(tag: &str, coding: Coding) -> String {
    match tag.strip_suffix('"') {
        Some(open) if open.contains('"') => format!("{open}-{}\"", coding.token()),
        _ => tag.to_owned(),
    }
}

/// Whether a `Vary` value names `Accept-Encoding` (or `*`).
fn varies_on_encoding(value: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|v| v == "*" || v.eq_ignore_ascii_case("accept-encoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(len: usize) -> Response {
        Response::new(200, Body::Bytes(vec![b'7'; len]))
            .with_field("Content-Type", "application/json")
    }

    fn accept(value: &str) -> AcceptEncoding {
        AcceptEncoding::parse(Some(value))
    }

    #[test]
    fn plans() {
        let on = Compression::on();
        assert_eq!(
            plan(&json(2000), &accept("gzip"), &on),
            Plan::Encode(Coding::Gzip)
        );
        assert_eq!(plan(&json(2000), &accept(""), &on), Plan::Vary);
        assert_eq!(
            plan(&json(10), &accept("gzip"), &on),
            Plan::Vary,
            "too small"
        );
        assert_eq!(
            plan(&json(10), &accept("gzip, identity;q=0"), &on),
            Plan::Encode(Coding::Gzip),
            "identity refused"
        );
        let off = Compression::default();
        assert_eq!(plan(&json(2000), &accept("gzip"), &off), Plan::AsIs);
        let mut opted_out = json(2000);
        opted_out.compress = false;
        assert_eq!(plan(&opted_out, &accept("gzip"), &on), Plan::AsIs);
        let png =
            Response::new(200, Body::Bytes(vec![0; 2000])).with_field("Content-Type", "image/png");
        assert_eq!(plan(&png, &accept("gzip"), &on), Plan::AsIs);
        let mut error = json(2000);
        error.status = 404;
        assert_eq!(plan(&error, &accept("gzip"), &on), Plan::AsIs);
        let encoded = json(2000).with_field("Content-Encoding", "br");
        assert_eq!(plan(&encoded, &accept("gzip"), &on), Plan::AsIs);
        let planned = apply(json(2000), Plan::Vary, &on);
        assert_eq!(
            plan(&planned, &accept("gzip"), &on),
            Plan::AsIs,
            "decided once"
        );
    }

    #[test]
    fn apply_encodes_tags_and_varies() {
        let on = Compression::on();
        let response = apply(
            json(5000).with_field("ETag", "\"abc\""),
            Plan::Encode(Coding::Zstd),
            &on,
        );
        let fields: Vec<(&str, &str)> = response
            .fields
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("Content-Type", "application/json"),
                ("ETag", "\"abc-zstd\""),
                ("Content-Encoding", "zstd"),
                ("Vary", "Accept-Encoding"),
            ]
        );
        let Body::Bytes(bytes) = &response.body else {
            panic!("bytes");
        };
        assert!(bytes.len() < 100);
        let plain = apply(json(5000), Plan::Vary, &on);
        assert_eq!(plain.body.len(), 5000);
        assert_eq!(tag_for("W/\"x\"", Coding::Br), "W/\"x-br\"");
        assert_eq!(tag_for("junk", Coding::Br), "junk");
    }
}
