//! The narrow hook through which alerts and breakers pause and resume campaigns.
//!
//! The campaign dialer implements [`CampaignControl`] and hands it to
//! [`super::Ops::set_campaigns`] when it starts; until then `pause_campaigns` actions
//! report that there is nothing to pause, and breakers pause nothing (a campaign's calls
//! are still refused with the fallback while its flow's dependency is down, since they
//! acquire through the flow).

use std::future::Future;
use std::pin::Pin;

/// A boxed future, for the object-safe trait below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A campaign as the operating layer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignInfo {
    /// Its name.
    pub name: String,
    /// Its priority (`pause_campaigns` pauses those below a value).
    pub priority: i32,
    /// The flow its calls acquire through (breakers pause campaigns by flow).
    pub flow: String,
    /// Whether it is dialing now (not paused, not finished).
    pub running: bool,
}

/// Pauses and resumes campaigns. `reason` is written to the campaign's log or state so
/// an operator can tell an automatic pause from a manual one.
pub trait CampaignControl: Send + Sync + std::fmt::Debug + 'static {
    /// Every campaign.
    fn campaigns(&self) -> BoxFuture<'_, Vec<CampaignInfo>>;
    /// Pauses a running campaign; true when it was running and is now paused.
    fn pause<'a>(&'a self, name: &'a str, reason: &'a str) -> BoxFuture<'a, bool>;
    /// Resumes a campaign paused by [`CampaignControl::pause`]; true when it runs again.
    fn resume<'a>(&'a self, name: &'a str, reason: &'a str) -> BoxFuture<'a, bool>;
}

/// The campaign dialer, seen through the hook: its list, `view` for each campaign's flow,
/// and `act` to pause and resume (durably, as `POST /v1/campaigns/{name}/pause` does).
impl CampaignControl for crate::campaign::Campaigns {
    fn campaigns(&self) -> BoxFuture<'_, Vec<CampaignInfo>> {
        Box::pin(async move {
            self.list()
                .into_iter()
                .filter_map(|c| {
                    let flow = self.view(&c.name).ok()?.flow;
                    Some(CampaignInfo { priority: c.priority, running: c.state == "running", flow, name: c.name })
                })
                .collect()
        })
    }

    fn pause<'a>(&'a self, name: &'a str, reason: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match self.act(name, crate::campaign::Action::Pause).await {
                Ok(v) => v.state == "paused",
                Err(e) => {
                    tracing::warn!(campaign = %name, reason, error = %e.message, "Cannot pause the campaign");
                    false
                }
            }
        })
    }

    fn resume<'a>(&'a self, name: &'a str, reason: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match self.act(name, crate::campaign::Action::Resume).await {
                Ok(v) => v.state == "running",
                Err(e) => {
                    tracing::warn!(campaign = %name, reason, error = %e.message, "Cannot resume the campaign");
                    false
                }
            }
        })
    }
}
