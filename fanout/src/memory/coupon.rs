//! Coupons with stock in the memory store.

use std::collections::HashMap;

use bytes::Bytes;
use danmaku_protocol::InteractionId;
use danmaku_protocol::audience::{Audience, Viewer};
use danmaku_protocol::data::CouponDoc;

use crate::{COUPON_FOR_OTHERS, CouponClaim, FanoutError, NewCoupon};

pub(crate) struct Coupon {
    pub(crate) id: InteractionId,
    title: String,
    stock: u64,
    remaining: u64,
    per_user: u32,
    pub(crate) ends_at_ms: u64,
    pub(crate) open: bool,
    /// Who may see and claim it; everyone when `None`.
    pub(crate) audience: Option<Audience>,
    /// Claims per user. Bounded by the stock: a user is in it only after a claim.
    by_user: HashMap<Box<str>, u32>,
    /// Every claim, in order; at most `stock`.
    claims: Vec<CouponClaim>,
    /// The remaining count changed since the last published `coupon` event.
    pub(crate) dirty: bool,
}

/// A `coupon` event to sequence: its data, and its audience (everyone when `None`).
pub(crate) type CouponEvent = (String, Option<Audience>);

impl Coupon {
    pub(crate) fn new(id: InteractionId, c: NewCoupon, ends_at_ms: u64) -> Self {
        Self {
            id,
            title: c.title,
            stock: c.stock,
            remaining: c.stock,
            per_user: c.per_user,
            ends_at_ms,
            open: true,
            audience: c.audience,
            by_user: HashMap::new(),
            claims: Vec::new(),
            dirty: false,
        }
    }

    /// Takes one of the stock for `user`. Returns whether that sold it out (its state
    /// is then published at once, not coalesced).
    pub(crate) fn claim(
        &mut self,
        viewer: &Viewer,
        code: &str,
        now: u64,
    ) -> Result<bool, FanoutError> {
        if !self.open || now >= self.ends_at_ms {
            return Err(FanoutError::CouponClosed(self.id.clone()));
        }
        if self.audience.as_ref().is_some_and(|a| !a.includes(viewer)) {
            return Err(FanoutError::NotEligible(self.id.clone(), COUPON_FOR_OTHERS));
        }
        let user = viewer.user();
        if self.remaining == 0 {
            return Err(FanoutError::SoldOut(self.id.clone()));
        }
        let held = self.by_user.get(user).copied().unwrap_or(0);
        if held >= self.per_user {
            return Err(FanoutError::AlreadyClaimed(self.id.clone()));
        }
        self.by_user.insert(Box::from(user), held + 1);
        self.remaining -= 1;
        self.claims.push(CouponClaim {
            user: user.to_owned(),
            code: code.to_owned(),
            at: now,
        });
        self.dirty = self.remaining > 0;
        Ok(self.remaining == 0)
    }

    pub(crate) fn claims(&self) -> Vec<CouponClaim> {
        self.claims.clone()
    }

    /// A `coupon` event of the state: its data, and its audience.
    pub(crate) fn event(&self) -> CouponEvent {
        (
            String::from_utf8_lossy(&self.encode()).into_owned(),
            self.audience.clone(),
        )
    }

    /// The state as the snapshot holds it: behind its audience's tag when targeted.
    pub(crate) fn encode_tagged(&self) -> Bytes {
        match &self.audience {
            Some(a) => a.wrap(&self.encode()),
            None => self.encode(),
        }
    }

    /// The state as the `data` of a `coupon` event.
    pub(crate) fn encode(&self) -> Bytes {
        let state = match (self.open, self.remaining) {
            (false, _) => "closed",
            (true, 0) => "sold_out",
            (true, _) => "open",
        };
        Bytes::from(
            CouponDoc {
                coupon: self.id.as_str(),
                state,
                title: &self.title,
                stock: self.stock,
                remaining: self.remaining,
                per_user: self.per_user,
                ends_at: self.ends_at_ms,
            }
            .encode(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coupon(stock: u64, per_user: u32) -> Coupon {
        let new = NewCoupon {
            title: "10 off".into(),
            stock,
            per_user,
            duration_s: 60,
            audience: None,
        };
        Coupon::new(InteractionId::new("c-1").expect("id"), new, 1_000)
    }

    fn v(user: &str) -> Viewer {
        Viewer::new(user.into(), vec!["fan".into()])
    }

    #[test]
    fn only_its_audience_sees_and_claims_a_targeted_coupon() {
        let mut c = coupon(3, 1);
        let vip = serde_json::json!({"tags": ["vip"]});
        c.audience = Some(Audience::from_json(&vip).unwrap_or_else(|e| panic!("{e}")));
        assert!(matches!(
            c.claim(&v("a"), "k1", 10),
            Err(FanoutError::NotEligible(..))
        ));
        let a_vip = Viewer::new("b".into(), vec!["vip".into()]);
        assert_eq!(c.claim(&a_vip, "k2", 11), Ok(false));
        let tagged = c.encode_tagged();
        let t = danmaku_protocol::audience::Targeted::split(&tagged)
            .unwrap_or_else(|| panic!("the snapshot's copy is targeted"));
        assert!(t.includes(&a_vip) && !t.includes(&v("a")));
        assert_eq!(t.event, c.encode());
    }

    #[test]
    fn exactly_the_stock_is_claimed_and_each_user_at_most_per_user() {
        let mut c = coupon(3, 2);
        assert_eq!(c.claim(&v("a"), "k1", 10), Ok(false));
        assert_eq!(c.claim(&v("a"), "k2", 11), Ok(false));
        assert!(matches!(
            c.claim(&v("a"), "k3", 12),
            Err(FanoutError::AlreadyClaimed(_))
        ));
        assert_eq!(
            c.claim(&v("b"), "k4", 13),
            Ok(true),
            "the last one sells it out"
        );
        assert!(matches!(
            c.claim(&v("c"), "k5", 14),
            Err(FanoutError::SoldOut(_))
        ));
        let codes: Vec<String> = c.claims().into_iter().map(|x| x.code).collect();
        assert_eq!(codes, ["k1", "k2", "k4"]);
        assert!(
            String::from_utf8_lossy(&c.encode())
                .contains(r#""state":"sold_out","title":"10 off","stock":3,"remaining":0"#)
        );
    }

    #[test]
    fn a_closed_or_ended_coupon_takes_no_claim() {
        let mut c = coupon(3, 1);
        assert!(matches!(
            c.claim(&v("a"), "k", 1_000),
            Err(FanoutError::CouponClosed(_))
        ));
        c.open = false;
        assert!(matches!(
            c.claim(&v("a"), "k", 10),
            Err(FanoutError::CouponClosed(_))
        ));
        assert!(String::from_utf8_lossy(&c.encode()).contains(r#""state":"closed""#));
        assert!(c.claims().is_empty());
    }
}
