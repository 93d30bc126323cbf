//! Who is measured: the server under test and, side by side in the same run, the baseline.

use std::future::Future;

use crate::target::{Service, Target};

/// One server to measure, as the report names it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Its nodes (one, or several of one cluster).
    pub service: &'a Service,
    /// Its name in the report, e.g. `cluster (2 nodes)`.
    pub label: &'a str,
    /// Its Redis, whose work is metered during the run.
    pub redis: Option<&'a Target>,
}

/// Measures `baseline` and `target` `rounds` times each, alternating which goes first (the
/// baseline in the first round), so that a busy spell on the machine hits both alike. Returns
/// `(targets, baselines)`, in the order they ran.
pub async fn alternate<'a, R, F, Fut>(
    rounds: u32,
    target: Subject<'a>,
    baseline: Subject<'a>,
    mut measure: F,
) -> (Vec<R>, Vec<R>)
where
    F: FnMut(Subject<'a>) -> Fut,
    Fut: Future<Output = R>,
{
    let (mut targets, mut baselines) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            baselines.push(measure(baseline).await);
            targets.push(measure(target).await);
        } else {
            targets.push(measure(target).await);
            baselines.push(measure(baseline).await);
        }
    }
    (targets, baselines)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[tokio::test]
    async fn rounds_alternate_which_goes_first() {
        let (t, b) = (
            Service::parse("http://127.0.0.1:1").expect("target"),
            Service::parse("http://127.0.0.1:2").expect("baseline"),
        );
        let subject = |service, label| Subject {
            service,
            label,
            redis: None,
        };
        let order = RefCell::new(Vec::new());
        let (targets, baselines) =
            alternate(3, subject(&t, "target"), subject(&b, "baseline"), |who| {
                order.borrow_mut().push(who.label);
                async move { who.label.len() }
            })
            .await;
        assert_eq!(
            order.into_inner(),
            [
                "baseline", "target", "target", "baseline", "baseline", "target"
            ]
        );
        assert_eq!((targets, baselines), (vec![6; 3], vec![8; 3]));
    }
}
