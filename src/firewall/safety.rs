//! The last check before a ban reaches the kernel: addresses that must never be banned.
//!
//! Jails already skip `ignoreip`; the firewall checks again (and more) because a ban of the
//! host's own address, of loopback or of a Docker bridge gateway can lock everyone out.

use std::net::IpAddr;

use ipnet::IpNet;

/// One of the host's addresses, with the interface that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnAddress {
    /// The address.
    pub address: IpAddr,
    /// Its interface (`eth0`, `docker0`, `br-1a2b…`): names a Docker gateway in the refusal.
    pub interface: String,
}

/// This machine's addresses as the kernel reports them now (Docker adds bridges at run time,
/// so the list is refreshed on every layout check).
pub fn system_addresses() -> Vec<OwnAddress> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces
            .into_iter()
            .map(|interface| OwnAddress {
                address: canonical(interface.ip()),
                interface: interface.name,
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot list this host's addresses; only loopback and ignoreip are protected");
            Vec::new()
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as the IPv4 address it is: that is what the kernel
/// matches for an IPv4 client. The rule lives in [`crate::address::canonical`].
pub fn canonical(address: IpAddr) -> IpAddr {
    crate::address::canonical(address)
}

fn is_docker_bridge(interface: &str) -> bool {
    interface == "docker0" || interface.starts_with("br-") || interface == "docker_gwbridge"
}

/// Why an address must not be banned, or `None` when it may be.
pub fn refusal(address: IpAddr, ignoreip: &[IpNet], own: &[OwnAddress]) -> Option<String> {
    if address.is_loopback() {
        return Some("is a loopback address".to_string());
    }
    if let Some(reason) = crate::address::not_a_client(address) {
        return Some(format!("is not a client address: it is {reason}"));
    }
    if let Some(network) = ignoreip.iter().find(|network| network.contains(&address)) {
        return Some(format!("is in the jail's ignoreip ({network})"));
    }
    if let Some(own) = own.iter().find(|own| own.address == address) {
        if is_docker_bridge(&own.interface) {
            return Some(format!(
                "is the gateway of Docker bridge {}: clients appear with this address when \
                 docker-proxy relays them (IPv6 clients, connections to 127.0.0.1, other \
                 containers), so the real client is hidden; banning it would cut off all of \
                 them. Publish ports on IPv4 with dockerd --userland-proxy=false so that \
                 containers see real client addresses",
                own.interface
            ));
        }
        return Some(format!(
            "is one of this host's own addresses (on {})",
            own.interface
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn loopback_unspecified_and_multicast_are_refused() {
        for text in [
            "127.0.0.1",
            "127.8.9.1",
            "::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
        ] {
            assert!(refusal(ip(text), &[], &[]).is_some(), "{text}");
        }
        assert_eq!(refusal(ip("203.0.113.7"), &[], &[]), None);
    }

    #[test]
    fn ignoreip_networks_are_refused_with_the_network_named() {
        let ignore: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert!(
            refusal(ip("10.2.3.4"), &ignore, &[])
                .unwrap()
                .contains("10.0.0.0/8")
        );
        assert!(
            refusal(ip("2001:db8::5"), &ignore, &[])
                .unwrap()
                .contains("2001:db8::/32")
        );
        assert_eq!(refusal(ip("11.0.0.1"), &ignore, &[]), None);
    }

    #[test]
    fn own_addresses_and_docker_gateways_are_refused_with_an_explanation() {
        let own = vec![
            OwnAddress {
                address: ip("192.0.2.10"),
                interface: "eth0".into(),
            },
            OwnAddress {
                address: ip("172.17.0.1"),
                interface: "docker0".into(),
            },
            OwnAddress {
                address: ip("172.18.0.1"),
                interface: "br-0123456789ab".into(),
            },
        ];
        assert!(
            refusal(ip("192.0.2.10"), &[], &own)
                .unwrap()
                .contains("own addresses (on eth0)")
        );
        let gateway = refusal(ip("172.17.0.1"), &[], &own).unwrap();
        assert!(
            gateway.contains("docker-proxy") && gateway.contains("docker0"),
            "{gateway}"
        );
        assert!(
            refusal(ip("172.18.0.1"), &[], &own)
                .unwrap()
                .contains("br-0123456789ab")
        );
        assert_eq!(refusal(ip("172.17.0.2"), &[], &own), None);
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        assert_eq!(canonical(ip("::ffff:198.51.100.1")), ip("198.51.100.1"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
    }
}
