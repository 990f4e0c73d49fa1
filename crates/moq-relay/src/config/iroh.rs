//! `[iroh]`: peer-to-peer transport. Accepted so existing files load; this relay does not
//! implement iroh, and warns when it is enabled.

use std::{
    net::{SocketAddrV4, SocketAddrV6},
    path::PathBuf,
};

use clap::Args;
use serde::Deserialize;

/// `[iroh]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Iroh {
    /// Accept iroh connections (not implemented here: ignored with a warning).
    #[arg(
        id = "iroh-enabled",
        long = "iroh-enabled",
        env = "MOQ_IROH_ENABLED",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub enabled: Option<bool>,

    /// File holding the iroh endpoint secret key.
    #[arg(
        id = "iroh-secret",
        long = "iroh-secret",
        env = "MOQ_IROH_SECRET",
        value_name = "FILE"
    )]
    pub secret: Option<PathBuf>,

    /// IPv4 socket for iroh.
    #[arg(
        id = "iroh-bind-v4",
        long = "iroh-bind-v4",
        env = "MOQ_IROH_BIND_V4",
        value_name = "ADDR"
    )]
    pub bind_v4: Option<SocketAddrV4>,

    /// IPv6 socket for iroh.
    #[arg(
        id = "iroh-bind-v6",
        long = "iroh-bind-v6",
        env = "MOQ_IROH_BIND_V6",
        value_name = "ADDR"
    )]
    pub bind_v6: Option<SocketAddrV6>,

    /// Do not use iroh relay servers.
    #[arg(
        id = "iroh-disable-relay",
        long = "iroh-disable-relay",
        env = "MOQ_IROH_DISABLE_RELAY",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub disable_relay: Option<bool>,
}
