//! The client address as the core's `PeerInfo` carries it, written once per connection.

use std::net::SocketAddr;

/// `addr` as `SocketAddr`'s `Display` writes it (`127.0.0.1:5555`, `[::1]:5555`). An IPv4
/// address is written digit by digit: the formatting machinery cost a tenth of the
/// instructions of a connection answered once and closed.
pub fn peer_text(addr: SocketAddr) -> String {
    let SocketAddr::V4(v4) = addr else {
        return addr.to_string();
    };
    let mut text = String::with_capacity(21); // "255.255.255.255:65535"
    for (n, octet) in v4.ip().octets().into_iter().enumerate() {
        if n > 0 {
            text.push('.');
        }
        push_decimal(&mut text, u32::from(octet));
    }
    text.push(':');
    push_decimal(&mut text, u32::from(v4.port()));
    text
}

/// Appends `n` in decimal.
fn push_decimal(text: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    text.extend(digits[start..].iter().map(|&d| char::from(d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_display_writes() {
        for addr in [
            "127.0.0.1:5555",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.0.200.7:80",
            "[::1]:8080",
            "[fe80::1%2]:1",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(peer_text(addr), addr.to_string());
        }
    }
}
