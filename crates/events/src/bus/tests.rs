use super::*;
use callgate_core::{Event, LeaseId};
use std::sync::Mutex;

/// Writes what it saw to a shared log, tagged with its name.
struct Recorder(&'static str, Arc<Mutex<Vec<String>>>);

impl LedgerSubscriber for Recorder {
    fn committed(&mut self, events: &[Event], names: &Names) {
        self.1.lock().unwrap().push(format!("{} {} events, pools {:?}", self.0, events.len(), names.pools));
    }

    fn renamed(&mut self, names: &Names) {
        self.1.lock().unwrap().push(format!("{} renamed {:?}", self.0, names.pools));
    }
}

fn names(pools: &[&str]) -> Names {
    Names {
        pools: pools.iter().map(|p| Arc::from(*p)).collect(),
        config_limits: vec![1; pools.len()],
        classes: vec![Arc::from("c")],
        flows: Vec::new(),
    }
}

fn renewed(id: u64) -> Event {
    Event::Renewed { lease: LeaseId(id), expires_at: 1, ttl_ms: 1, at: 0 }
}

#[test]
fn every_subscriber_sees_every_batch_in_order_with_the_names_in_force() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut bus = LedgerBus::new(names(&["a"]))
        .subscribe(Recorder("first", log.clone()))
        .subscribe(Recorder("second", log.clone()));
    bus.committed(&[renewed(1), renewed(2)]);
    bus.renamed(&names(&["a", "b"]));
    bus.committed(&[renewed(3)]);
    assert_eq!(
        *log.lock().unwrap(),
        [
            r#"first 2 events, pools ["a"]"#,
            r#"second 2 events, pools ["a"]"#,
            r#"first renamed ["a", "b"]"#,
            r#"second renamed ["a", "b"]"#,
            r#"first 1 events, pools ["a", "b"]"#,
            r#"second 1 events, pools ["a", "b"]"#,
        ]
    );
}

fn update(call: &str) -> ProviderUpdate {
    ProviderUpdate { provider: "vapi-main".into(), call_id: call.into(), attempt: None, state: CallState::Live }
}

#[tokio::test]
async fn without_a_dialer_call_events_are_nobodys_and_commands_do_nothing() {
    let bus = Bus::without_dialer();
    assert!(!bus.call(update("c1")).await);
    assert_eq!(bus.campaigns().await, None);
    assert!(!bus.pause_campaign("renewals", "alert").await);
    assert!(!bus.resume_campaign("renewals", "alert").await);
}

#[tokio::test]
async fn the_dialer_answers_call_events_and_commands() {
    let (bus, mut inbox) = Bus::new();
    let dialer = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(msg) = inbox.recv().await {
            match msg {
                ToDialer::Call(u, answer) => {
                    let _ = answer.send(u.call_id == "mine");
                    seen.push(u.call_id);
                }
                ToDialer::Command(CampaignCommand::List(answer)) => {
                    let c = CampaignInfo { name: "renewals".into(), priority: 1, flow: "out".into(), running: true };
                    let _ = answer.send(vec![c]);
                }
                ToDialer::Command(CampaignCommand::Pause { name, done, .. }) => {
                    let _ = done.send(name == "renewals");
                }
                // Dropped without an answer: the publisher hears `false`.
                ToDialer::Command(CampaignCommand::Resume { .. }) => {}
            }
        }
        seen
    });
    assert!(bus.call(update("mine")).await);
    assert!(!bus.call(update("theirs")).await);
    assert_eq!(bus.campaigns().await.map(|l| l.len()), Some(1));
    assert!(bus.pause_campaign("renewals", "alert `x` fired").await);
    assert!(!bus.pause_campaign("other", "alert `x` fired").await);
    assert!(!bus.resume_campaign("renewals", "alert `x` resolved").await);
    drop(bus);
    assert_eq!(dialer.await.unwrap(), ["mine", "theirs"], "in the order published");
}
