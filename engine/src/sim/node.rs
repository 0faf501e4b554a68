//! Nodes of the simulated network. Every node is a state machine with
//! `handle(input, now) -> outputs`; the world and the network address nodes by index and never
//! look inside one except through [`Node`]'s methods. Today every node is a homeserver; identity
//! servers and key notaries (the identity and account-key proposals) become variants here.

use super::identity_node::IdentityNode;
use super::notary::Notary;
use super::server::{Input, Output, Server};
use super::time::SimTime;

pub enum Node {
    Homeserver(Box<Server>),
    /// A key notary (`notary.rs`): not a homeserver, so never measured or held to the
    /// invariants.
    Notary(Box<Notary>),
    /// An identity server (`identity_node.rs`): not a homeserver either.
    IdentityServer(Box<IdentityNode>),
}

impl Node {
    pub fn handle(&mut self, input: Input, now: SimTime) -> Vec<Output> {
        match self {
            Node::Homeserver(s) => s.handle(input, now),
            Node::Notary(n) => n.handle(input, now),
            Node::IdentityServer(n) => n.handle(input, now),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Node::Homeserver(s) => &s.name,
            Node::Notary(n) => &n.name,
            Node::IdentityServer(n) => &n.name,
        }
    }

    /// Nothing queued, in flight or armed (for quiescence).
    pub fn is_idle(&self) -> bool {
        match self {
            Node::Homeserver(s) => s.is_idle(),
            Node::Notary(n) => n.is_idle(),
            Node::IdentityServer(n) => n.is_idle(),
        }
    }

    /// An honest homeserver: its decisions are held to the invariants and measured.
    pub fn is_honest_server(&self) -> bool {
        match self {
            Node::Homeserver(s) => s.is_honest(),
            Node::Notary(_) | Node::IdentityServer(_) => false,
        }
    }

    pub fn deliveries(&self) -> u64 {
        match self {
            Node::Homeserver(s) => s.deliveries,
            Node::Notary(_) | Node::IdentityServer(_) => 0,
        }
    }

    pub fn as_server(&self) -> Option<&Server> {
        match self {
            Node::Homeserver(s) => Some(s),
            Node::Notary(_) | Node::IdentityServer(_) => None,
        }
    }

    pub fn as_notary(&self) -> Option<&Notary> {
        match self {
            Node::Notary(n) => Some(n),
            Node::Homeserver(_) | Node::IdentityServer(_) => None,
        }
    }

    pub fn as_identity_server(&self) -> Option<&IdentityNode> {
        match self {
            Node::IdentityServer(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_server_mut(&mut self) -> Option<&mut Server> {
        match self {
            Node::Homeserver(s) => Some(s),
            Node::Notary(_) | Node::IdentityServer(_) => None,
        }
    }
}
