//! Where the cluster token may go. Directory entries name the URLs relays dial with the
//! cluster token; an entry naming a host outside this list is refused instead of dialled,
//! so a directory writer cannot make us hand the token to a host of its choosing.

use std::net::IpAddr;

use ipnet::IpNet;
use url::{Host, Url};

use crate::config;

/// Host names (exact or `*.suffix`) and networks the cluster token may be sent to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    names: Vec<String>,
    nets: Vec<IpNet>,
}

impl AllowList {
    /// `[cluster] allow`, or by default the hosts of `connect`, `root` and `node`.
    pub fn from_config(cluster: &config::Cluster) -> Result<Self, String> {
        let mut list = Self::default();
        if cluster.allow.is_empty() {
            let urls = cluster
                .peers()
                .into_iter()
                .chain(cluster.roots())
                .chain(cluster.node.clone());
            for url in urls {
                if let Some(host) = Url::parse(&config::peer_url(&url))
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                {
                    list.add(&host)?;
                }
            }
        } else {
            for entry in &cluster.allow {
                list.add(entry)?;
            }
        }
        Ok(list)
    }

    /// Add a name, `*.suffix` pattern, address or network.
    pub fn add(&mut self, entry: &str) -> Result<(), String> {
        let entry = entry.trim().trim_start_matches('[').trim_end_matches(']');
        if let Ok(net) = entry.parse::<IpNet>() {
            self.nets.push(net);
        } else if let Ok(ip) = entry.parse::<IpAddr>() {
            self.nets.push(IpNet::from(ip));
        } else if !entry.is_empty()
            && entry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.*".contains(c))
        {
            self.names.push(entry.to_ascii_lowercase());
        } else {
            return Err(format!(
                "cluster.allow: '{entry}' is not a host name, address or network"
            ));
        }
        Ok(())
    }

    /// Whether `url`'s host is allowed.
    pub fn allows(&self, url: &Url) -> bool {
        match url.host() {
            Some(Host::Ipv4(ip)) => self.nets.iter().any(|n| n.contains(&IpAddr::V4(ip))),
            Some(Host::Ipv6(ip)) => self.nets.iter().any(|n| n.contains(&IpAddr::V6(ip))),
            Some(Host::Domain(name)) => {
                let name = name.to_ascii_lowercase();
                self.names.iter().any(|allowed| match allowed.strip_prefix("*.") {
                    Some(suffix) => name.strip_suffix(suffix).is_some_and(|head| head.ends_with('.')),
                    None => *allowed == name,
                })
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(list: &AllowList, url: &str) -> bool {
        list.allows(&Url::parse(url).unwrap())
    }

    #[test]
    fn names_wildcards_and_networks() {
        let mut list = AllowList::default();
        for entry in [
            "relay.example.com",
            "*.edge.example.com",
            "10.0.0.0/8",
            "::1",
            "[fd00::1]",
        ] {
            list.add(entry).unwrap();
        }
        assert!(allows(&list, "https://RELAY.example.com:4443/"));
        assert!(allows(&list, "https://a.edge.example.com/"));
        assert!(
            !allows(&list, "https://edge.example.com/"),
            "the wildcard needs a label"
        );
        assert!(!allows(&list, "https://evil-edge.example.com/"));
        assert!(!allows(&list, "https://relay.example.com.evil.net/"));
        assert!(allows(&list, "https://10.1.2.3:443/"));
        assert!(!allows(&list, "https://11.1.2.3/"));
        assert!(allows(&list, "https://[::1]:4443/"));
        assert!(allows(&list, "https://[fd00::1]/"));
        assert!(list.add("not a host!").is_err());
    }

    #[test]
    fn the_default_is_the_configured_relays() {
        let mut cluster = config::Cluster::default();
        cluster.connect = vec![
            "https://regional.example.com:4443/?jwt=x".into(),
            "127.0.0.5:4443".into(),
        ];
        cluster.root = vec!["https://root.example.com/".into()];
        cluster.node = Some("https://me.example.com/".into());
        let list = AllowList::from_config(&cluster).unwrap();
        assert!(allows(&list, "https://regional.example.com:9999/"));
        assert!(allows(&list, "https://127.0.0.5:1/"));
        assert!(allows(&list, "https://root.example.com/"));
        assert!(!allows(&list, "https://attacker.example.net/"));
    }
}
