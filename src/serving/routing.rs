//! Picking a replica for a request, as a gateway or load balancer in front of a model does.
//!
//! - `round-robin`: replicas in turn, whatever their load (Kubernetes Services, the default
//!   of most gateways).
//! - `least-outstanding`: the replica with the fewest requests in progress (ties go to the
//!   next in round-robin order), as NGINX `least_conn` or Envoy's least request with full
//!   knowledge.
//! - `power-of-two`: two distinct replicas drawn at random, the less loaded of the two wins
//!   (Envoy's `LEAST_REQUEST` load balancer, which samples two hosts by default): nearly as
//!   good as least-outstanding without a global view.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A routing policy, as written in a deployment (`routing = "least-outstanding"`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingPolicy {
    /// Replicas in turn.
    #[default]
    RoundRobin,
    /// Fewest requests in progress.
    LeastOutstanding,
    /// Best of two random picks.
    PowerOfTwo,
}

/// A model's replicas as the router sees them: how many requests each has in progress.
#[derive(Debug)]
pub struct Router {
    policy: RoutingPolicy,
    outstanding: Vec<u32>,
    up: Vec<bool>,
    /// Replicas down.
    down: usize,
    cursor: usize,
}

impl Router {
    /// A router over `replicas` replicas.
    pub fn new(policy: RoutingPolicy, replicas: usize) -> Self {
        assert!(replicas > 0, "invariant: a deployment has replicas");
        Router {
            policy,
            outstanding: vec![0; replicas],
            up: vec![true; replicas],
            down: 0,
            cursor: 0,
        }
    }

    /// Choose a replica that is up (an index into this model's replicas) and count the
    /// request as outstanding on it until [`Router::done`]; `None` when every replica is down.
    pub fn pick(&mut self, rng: &mut ChaCha8Rng) -> Option<usize> {
        let n = self.outstanding.len();
        let up = |i: &usize| self.up[*i];
        let i = match self.policy {
            RoutingPolicy::RoundRobin => {
                let i = (0..n).map(|k| (self.cursor + k) % n).find(up)?;
                self.cursor = (i + 1) % n;
                i
            }
            RoutingPolicy::LeastOutstanding => {
                let start = self.cursor % n;
                let i = (0..n)
                    .map(|k| (start + k) % n)
                    .filter(up)
                    .min_by_key(|&i| self.outstanding[i])?;
                self.cursor = (i + 1) % n;
                i
            }
            // All up (the usual case): draw among all without building a list.
            RoutingPolicy::PowerOfTwo if self.down == 0 => {
                if n == 1 {
                    0
                } else {
                    let a = rng.random_range(0..n);
                    let b = (a + rng.random_range(1..n)) % n;
                    if self.outstanding[b] < self.outstanding[a] {
                        b
                    } else {
                        a
                    }
                }
            }
            RoutingPolicy::PowerOfTwo => {
                let live: Vec<usize> = (0..n).filter(up).collect();
                match live.len() {
                    0 => return None,
                    1 => live[0],
                    m => {
                        let a = rng.random_range(0..m);
                        let b = (a + rng.random_range(1..m)) % m;
                        let (a, b) = (live[a], live[b]);
                        if self.outstanding[b] < self.outstanding[a] {
                            b
                        } else {
                            a
                        }
                    }
                }
            }
        };
        self.outstanding[i] += 1;
        Some(i)
    }

    /// Mark replica `i` up (serving) or down (crashed, restarting): down replicas get nothing.
    pub fn set_up(&mut self, i: usize, up: bool) {
        if self.up[i] != up {
            self.up[i] = up;
            if up {
                self.down -= 1;
            } else {
                self.down += 1;
            }
        }
    }

    /// Whether replica `i` is up.
    pub fn is_up(&self, i: usize) -> bool {
        self.up[i]
    }

    /// A request routed to replica `i` is over there.
    pub fn done(&mut self, i: usize) {
        self.outstanding[i] = self.outstanding[i]
            .checked_sub(1)
            .expect("invariant: done once per pick");
    }

    /// Requests in progress per replica.
    pub fn outstanding(&self) -> &[u32] {
        &self.outstanding
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Streams;

    #[test]
    fn round_robin_takes_turns_whatever_the_load() {
        let mut r = Router::new(RoutingPolicy::RoundRobin, 3);
        let mut rng = Streams::new(1).stream("routing");
        let picks: Vec<usize> = (0..7).map(|_| r.pick(&mut rng).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn least_outstanding_fills_the_idle_replica_first() {
        let mut r = Router::new(RoutingPolicy::LeastOutstanding, 3);
        let mut rng = Streams::new(1).stream("routing");
        assert_eq!(r.pick(&mut rng).unwrap(), 0);
        assert_eq!(r.pick(&mut rng).unwrap(), 1);
        assert_eq!(r.pick(&mut rng).unwrap(), 2);
        r.done(1);
        r.done(1 - 1);
        // Replicas 0 and 1 are idle; the tie goes on round-robin from the last pick.
        assert_eq!(r.pick(&mut rng).unwrap(), 0);
        assert_eq!(r.pick(&mut rng).unwrap(), 1);
        assert_eq!(r.outstanding(), &[1, 1, 1]);
    }

    #[test]
    fn power_of_two_never_picks_the_busier_of_its_two_draws() {
        let mut r = Router::new(RoutingPolicy::PowerOfTwo, 4);
        let mut rng = Streams::new(7).stream("routing");
        // Load replica 3 heavily: it can win only a draw against itself, which never happens.
        r.outstanding = vec![0, 0, 0, 100];
        let mut counts = [0u32; 4];
        for _ in 0..3000 {
            let i = r.pick(&mut rng).unwrap();
            counts[i] += 1;
            r.done(i);
        }
        assert_eq!(counts[3], 0);
        // The other three share evenly (each ~1000; 5 sigma ~ 130).
        for c in &counts[..3] {
            assert!((870..=1130).contains(c), "{counts:?}");
        }
    }

    #[test]
    fn every_policy_routes_around_replicas_that_are_down() {
        for policy in [
            RoutingPolicy::RoundRobin,
            RoutingPolicy::LeastOutstanding,
            RoutingPolicy::PowerOfTwo,
        ] {
            let mut r = Router::new(policy, 3);
            let mut rng = Streams::new(5).stream("routing");
            r.set_up(1, false);
            for _ in 0..100 {
                assert_ne!(r.pick(&mut rng), Some(1), "{policy:?}");
            }
            r.set_up(0, false);
            r.set_up(2, false);
            assert_eq!(r.pick(&mut rng), None);
        }
    }

    #[test]
    fn policies_balance_outstanding_work_as_specified() {
        // Requests that never finish: least-outstanding keeps counts within one of each
        // other; round-robin too; power-of-two within a small spread.
        for (policy, spread) in [
            (RoutingPolicy::RoundRobin, 1),
            (RoutingPolicy::LeastOutstanding, 1),
            (RoutingPolicy::PowerOfTwo, 4),
        ] {
            let mut r = Router::new(policy, 5);
            let mut rng = Streams::new(3).stream("routing");
            for _ in 0..1000 {
                r.pick(&mut rng).unwrap();
            }
            let o = r.outstanding();
            let (lo, hi) = (o.iter().min().unwrap(), o.iter().max().unwrap());
            assert!(hi - lo <= spread, "{policy:?}: {o:?}");
        }
    }
}
