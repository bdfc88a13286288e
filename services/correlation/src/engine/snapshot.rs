//! The engine's state as bytes and back (postcard). Windows are stored under their rule's id,
//! not its position, so a restored state survives rules being added, removed or reordered:
//! windows of rules that no longer exist are dropped.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Engine, window::Group};

/// Format version of [`Engine::snapshot`].
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Image {
    version: u32,
    watermark: i64,
    groups: Vec<(String, u64, Group)>,
    seen: Vec<(u64, u64)>,
}

impl Engine {
    /// The windows, the watermark and the remembered event ids, as bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let s = &self.state;
        let image = Image {
            version: VERSION,
            watermark: s.watermark,
            groups: s
                .groups
                .iter()
                .map(|((r, k), g)| (self.pack.rules[*r as usize].id.clone(), *k, g.clone()))
                .collect(),
            seen: s
                .seen_order
                .iter()
                .map(|id| (*id, s.seen.get(id).copied().unwrap_or(0)))
                .collect(),
        };
        postcard::to_stdvec(&image).unwrap_or_default()
    }

    /// Replaces the state with one from [`Engine::snapshot`]; on error nothing changes.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let image: Image = postcard::from_bytes(bytes).map_err(|e| format!("unreadable correlation state: {e}"))?;
        if image.version != VERSION {
            return Err(format!("correlation state version {} is not {VERSION}", image.version));
        }
        let index: HashMap<&str, u32> = self
            .pack
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i as u32))
            .collect();
        let mut state = super::State {
            watermark: image.watermark,
            ..Default::default()
        };
        for (rule, key, group) in image.groups {
            if let Some(r) = index.get(rule.as_str()) {
                state.groups.insert((*r, key), group);
            }
        }
        for (id, mask) in image.seen {
            state.seen.insert(id, mask);
            state.seen_order.push_back(id);
        }
        self.state = state;
        Ok(())
    }
}
