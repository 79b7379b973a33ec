//! `Accept-Encoding` (RFC 9110 §12.5.3): the q-value a request gives each coding we
//! produce, and the choice among the codings a representation is available in.

use super::Coding;
use crate::http::qvalue::parse_qvalue;

/// The preferences of one request, as q-values in thousandths (0: not acceptable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct AcceptEncoding {
    /// Indexed by [`Coding::index`].
    codings: [u16; Coding::ALL.len()],
    /// `identity`'s q-value when the field names it (or `*` covers it).
    identity: Option<u16>,
}

impl AcceptEncoding {
    /// Reads the field's value; `None` (no field) accepts no coding, like an empty value.
    /// Malformed elements are skipped; `x-gzip` is `gzip`.
    pub(crate) fn parse(value: Option<&str>) -> Self {
        let mut accept = Self::default();
        let mut named = [false; Coding::ALL.len()];
        let mut star = None;
        for element in value.unwrap_or_default().split(',') {
            let mut parts = element.split(';');
            let token = parts.next().unwrap_or_default().trim();
            if token.is_empty() {
                continue;
            }
            let mut q = Some(1000);
            for param in parts {
                let Some((name, value)) = param.split_once('=') else {
                    continue;
                };
                if name.trim().eq_ignore_ascii_case("q") {
                    q = parse_qvalue(value.trim());
                }
            }
            let Some(q) = q else {
                continue;
            };
            if token == "*" {
                star = Some(q);
            } else if token.eq_ignore_ascii_case("identity") {
                accept.identity = Some(q);
            } else if let Some(coding) = Coding::from_token(token) {
                accept.codings[coding.index()] = q;
                named[coding.index()] = true;
            }
        }
        if let Some(star) = star {
            for (q, named) in accept.codings.iter_mut().zip(named) {
                if !named {
                    *q = star;
                }
            }
            accept.identity = accept.identity.or(Some(star));
        }
        accept
    }

    /// Whether the request refuses the identity representation (`identity;q=0`, or
    /// `*;q=0` without `identity`).
    pub(crate) fn refuses_identity(&self) -> bool {
        self.identity == Some(0)
    }

    /// The coding to send among `available` (ordered by the server's preference), or
    /// `None` for identity: the highest q wins, ties go to the server's order, and an
    /// `identity` the request ranks above every acceptable coding wins over them.
    pub(crate) fn choose(&self, available: &[Coding]) -> Option<Coding> {
        let mut best: Option<(Coding, u16)> = None;
        for &coding in available {
            let q = self.codings[coding.index()];
            if q > 0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((coding, q));
            }
        }
        let (coding, q) = best?;
        (q >= self.identity.unwrap_or(0)).then_some(coding)
    }

    /// Whether any of `available` is acceptable at all.
    pub(crate) fn accepts_any(&self, available: &[Coding]) -> bool {
        available.iter().any(|c| self.codings[c.index()] > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::{Br, Gzip, Zstd};

    const ALL: &[Coding] = &[Zstd, Br, Gzip];

    fn choose(value: &str) -> Option<Coding> {
        AcceptEncoding::parse(Some(value)).choose(ALL)
    }

    #[test]
    fn negotiation_matrix() {
        // (field, chosen among zstd, br, gzip in that server order)
        let cases = [
            ("gzip", Some(Gzip)),
            ("x-gzip", Some(Gzip)),
            ("GZIP", Some(Gzip)),
            ("br", Some(Br)),
            ("zstd", Some(Zstd)),
            ("gzip, deflate, br, zstd", Some(Zstd)),
            ("gzip, deflate, br", Some(Br)),
            ("gzip;q=1.0, br;q=0.8", Some(Gzip)),
            ("br;q=0.5, gzip;q=0.5", Some(Br)),
            ("*", Some(Zstd)),
            ("*;q=0.5, gzip", Some(Gzip)),
            ("br;q=0, *", Some(Zstd)),
            ("zstd;q=0, br;q=0, *", Some(Gzip)),
            ("gzip;q=0", None),
            ("*;q=0", None),
            ("identity", None),
            ("", None),
            ("deflate, compress", None),
            ("gzip;q=0.5, identity", None),
            ("gzip;q=0.5, identity;q=0.5", Some(Gzip)),
            ("gzip, identity;q=0", Some(Gzip)),
            ("gzip;q=2", None),
            ("gzip;q=abc, br", Some(Br)),
            (" gzip ; q = 0.3 ,br;Q=0.2", Some(Gzip)),
            (",,gzip,,", Some(Gzip)),
        ];
        for (field, want) in cases {
            assert_eq!(choose(field), want, "{field:?}");
        }
        assert_eq!(AcceptEncoding::parse(None).choose(ALL), None);
        assert_eq!(
            AcceptEncoding::parse(Some("gzip, br")).choose(&[Gzip]),
            Some(Gzip),
            "only what is available"
        );
        assert_eq!(AcceptEncoding::parse(Some("br")).choose(&[Gzip]), None);
    }

    #[test]
    fn identity_refusals() {
        for (field, refused) in [
            ("identity;q=0", true),
            ("*;q=0", true),
            ("*;q=0, identity", false),
            ("gzip", false),
            ("identity;q=0.1", false),
        ] {
            let accept = AcceptEncoding::parse(Some(field));
            assert_eq!(accept.refuses_identity(), refused, "{field}");
        }
        assert!(AcceptEncoding::parse(Some("br")).accepts_any(ALL));
        assert!(!AcceptEncoding::parse(Some("br;q=0")).accepts_any(ALL));
    }
}
