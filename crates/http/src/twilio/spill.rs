//! A Twilio caller spilled or routed to another flow: admitted there first, then
//! `<Dial>`led to where that flow is reached (see [`callgate_runtime::inbound`]'s spill docs).

use super::call::TwilioCall;
use super::twiml::{Dialed, Twiml, Verb};
use super::Endpoint;
use crate::error::ApiError;
use callgate_config::{FlowConfig, Overflow, TransferTo};
use callgate_governor::Edge;

impl TwilioCall<'_> {
    /// Spills the caller to `target` (admitted there first): `<Dial>` to where it is
    /// reached, whose end comes back to `back` (a chain's next step), or, for a routing
    /// rule (`None`), to this flow's admission. `None` when no line is free there.
    pub(super) async fn spill(
        &self,
        flow: &FlowConfig,
        step: &Overflow,
        target: &FlowConfig,
        back: Option<&[(&str, &str)]>,
    ) -> Result<Option<Twiml>, ApiError> {
        let spills = &self.app.inbound.spills;
        let Some(spilled) = spills.spill(self.app.effects(), Edge::Twilio, &self.call, flow, step, target).await?
        else {
            return Ok(None);
        };
        let to = match spilled.to {
            TransferTo::Number(n) => Dialed::Number(n),
            TransferTo::Sip(s) => Dialed::Sip(s),
        };
        let action = match back {
            Some(query) => self.url(Endpoint::Dialed, query),
            None => self.url(Endpoint::Dialed, &[("flow", flow.name.as_str()), ("spill", "route")]),
        };
        let twiml = match &step.message {
            Some(m) => Twiml::of(Verb::Say(m.clone())),
            None => Twiml::new(),
        };
        Ok(Some(twiml.push(Verb::Dial { to, action: Some(action) })))
    }
}
