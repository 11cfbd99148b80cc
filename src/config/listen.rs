//! Listener settings as operators write them: `HOST:PORT`, `[IPv6]:PORT`, a bare `PORT` (every
//! interface, IPv6 and IPv4, as RabbitMQ's `listeners.tcp.default = 5672`), or `none`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// One address to bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The IPv6 half of an "every interface" pair: skipped (with a warning) where the machine
    /// has no IPv6, as long as the IPv4 half binds.
    pub ipv6_optional: bool,
}

/// A listener setting: disabled, or the addresses it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerSetting {
    /// `none`.
    Disabled,
    /// One or more addresses (a host name or a bare port can name several).
    Addrs(Vec<ListenAddr>),
}

impl ListenerSetting {
    /// Parses one value; the error says what is expected (the caller names the setting).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") {
            return Ok(ListenerSetting::Disabled);
        }
        if let Ok(port) = text.parse::<u16>() {
            return Ok(ListenerSetting::Addrs(every_interface(port)));
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(ListenerSetting::Addrs(vec![ListenAddr {
                addr,
                ipv6_optional: false,
            }]));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!(
                "'{text}' is not HOST:PORT, [IPv6]:PORT, PORT or none (e.g. 0.0.0.0:5672, \
                 [::1]:5672, 5672)"
            ));
        };
        if port.parse::<u16>().is_err() {
            return Err(format!(
                "'{text}': the port '{port}' is not a number from 0 to 65535"
            ));
        }
        let addrs: Vec<ListenAddr> = (host, 0)
            .to_socket_addrs()
            .map_err(|e| format!("'{text}': cannot resolve host '{host}': {e}"))?
            .map(|a| ListenAddr {
                addr: SocketAddr::new(a.ip(), port.parse().unwrap_or_default()),
                ipv6_optional: false,
            })
            .collect();
        if addrs.is_empty() {
            return Err(format!("'{text}': host '{host}' has no address"));
        }
        Ok(ListenerSetting::Addrs(addrs))
    }

    /// The addresses to bind (none when disabled).
    pub fn addrs(&self) -> &[ListenAddr] {
        match self {
            ListenerSetting::Disabled => &[],
            ListenerSetting::Addrs(a) => a,
        }
    }

    /// Whether this setting asks for a listener at all.
    pub fn is_enabled(&self) -> bool {
        !self.addrs().is_empty()
    }
}

/// `[::]:PORT` and `0.0.0.0:PORT`, as RabbitMQ listens by default.
pub fn every_interface(port: u16) -> Vec<ListenAddr> {
    vec![
        ListenAddr {
            addr: SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            ipv6_optional: true,
        },
        ListenAddr {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            ipv6_optional: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(text: &str) -> Vec<SocketAddr> {
        ListenerSetting::parse(text)
            .expect(text)
            .addrs()
            .iter()
            .map(|a| a.addr)
            .collect()
    }

    #[test]
    fn forms() {
        assert_eq!(addrs("127.0.0.1:5672"), ["127.0.0.1:5672".parse().unwrap()]);
        assert_eq!(addrs("[::1]:5672"), ["[::1]:5672".parse().unwrap()]);
        assert_eq!(
            addrs("5673"),
            [
                "[::]:5673".parse::<SocketAddr>().unwrap(),
                "0.0.0.0:5673".parse().unwrap()
            ]
        );
        assert_eq!(
            ListenerSetting::parse("none"),
            Ok(ListenerSetting::Disabled)
        );
        assert!(addrs("localhost:5672")
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 5672));
    }

    #[test]
    fn errors_say_what_is_expected() {
        let e = ListenerSetting::parse("nonsense").unwrap_err();
        assert!(e.contains("HOST:PORT"), "{e}");
        let e = ListenerSetting::parse("127.0.0.1:99999").unwrap_err();
        assert!(e.contains("port '99999'"), "{e}");
    }
}
