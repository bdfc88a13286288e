//! Sigma's Windows log source taxonomy: which event log channels and event ids a rule's
//! `logsource` (product/category/service) stands for.
//!
//! Categories follow the Sigma taxonomy appendix and pySigma's Windows pipeline: Sysmon event
//! ids, Security 4688 for `process_creation`, the PowerShell channels for `ps_*`. Services name
//! a channel. Channel names are compared lowercased. A log source with no event log channel
//! (ETW-only categories such as `file_access`) is refused with its reason.

use serde_yaml::Value;

/// Sysmon's channel.
pub(crate) const SYSMON: &str = "microsoft-windows-sysmon/operational";
const SECURITY: &str = "security";
const PS_OPERATIONAL: &str = "microsoft-windows-powershell/operational";
const PS_CORE: &str = "powershellcore/operational";
const PS_CLASSIC: &str = "windows powershell";

/// Where a rule applies: channel (lowercase) and event ids (empty: every event of the channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) channel: &'static str,
    pub(crate) event_ids: &'static [u32],
}

const fn r(channel: &'static str, event_ids: &'static [u32]) -> Route {
    Route { channel, event_ids }
}

/// The rule's log source as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogSource {
    pub(crate) product: String,
    pub(crate) category: String,
    pub(crate) service: String,
}

impl LogSource {
    /// Reads `logsource` of a rule document.
    pub(crate) fn from_yaml(v: Option<&Value>) -> Self {
        let get = |k: &str| {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        };
        LogSource {
            product: get("product"),
            category: get("category"),
            service: get("service"),
        }
    }

    /// `product/category/service` with the empty parts left out, for reports.
    pub(crate) fn key(&self) -> String {
        [&self.product, &self.category, &self.service]
            .into_iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The routes of this log source; `Ok(None)` means every Windows event.
    pub(crate) fn routes(&self) -> Result<Option<Vec<Route>>, String> {
        if self.product != "windows" {
            return Err(format!(
                "log source `{}` is not a Windows one (product: windows)",
                self.key()
            ));
        }
        if !self.category.is_empty() {
            return category(&self.category).map(Some).ok_or_else(|| {
                format!(
                    "log source category `{}` has no Windows event log channel (needs ETW or another collector)",
                    self.category
                )
            });
        }
        if !self.service.is_empty() {
            return service(&self.service)
                .map(|channels| Some(channels.iter().map(|c| r(c, &[])).collect()))
                .ok_or_else(|| format!("log source service `{}` has no known event log channel", self.service));
        }
        Ok(None)
    }
}

fn category(name: &str) -> Option<Vec<Route>> {
    let sysmon = |ids: &'static [u32]| Some(vec![r(SYSMON, ids)]);
    match name {
        "process_creation" => Some(vec![r(SYSMON, &[1]), r(SECURITY, &[4688])]),
        "file_change" => sysmon(&[2]),
        "network_connection" => sysmon(&[3]),
        "sysmon_status" => sysmon(&[4, 16]),
        "process_termination" => sysmon(&[5]),
        "driver_load" => sysmon(&[6]),
        "image_load" => sysmon(&[7]),
        "create_remote_thread" => sysmon(&[8]),
        "raw_access_thread" => sysmon(&[9]),
        "process_access" => sysmon(&[10]),
        "file_event" => sysmon(&[11]),
        "registry_add" | "registry_delete" => sysmon(&[12]),
        "registry_set" => sysmon(&[13]),
        "registry_rename" => sysmon(&[14]),
        "registry_event" => sysmon(&[12, 13, 14]),
        "create_stream_hash" => sysmon(&[15]),
        "pipe_created" => sysmon(&[17, 18]),
        "wmi_event" => sysmon(&[19, 20, 21]),
        "dns_query" => sysmon(&[22]),
        "file_delete" => sysmon(&[23, 26]),
        "clipboard_capture" => sysmon(&[24]),
        "process_tampering" => sysmon(&[25]),
        "file_delete_detected" => sysmon(&[26]),
        "file_block_executable" => sysmon(&[27]),
        "file_block_shredding" => sysmon(&[28]),
        "file_executable_detected" => sysmon(&[29]),
        "sysmon_error" => sysmon(&[255]),
        "ps_module" => Some(vec![r(PS_OPERATIONAL, &[4103]), r(PS_CORE, &[4103])]),
        "ps_script" => Some(vec![r(PS_OPERATIONAL, &[4104]), r(PS_CORE, &[4104])]),
        "ps_classic_start" => Some(vec![r(PS_CLASSIC, &[400])]),
        "ps_classic_provider_start" => Some(vec![r(PS_CLASSIC, &[600])]),
        "ps_classic_script" => Some(vec![r(PS_CLASSIC, &[800])]),
        _ => None,
    }
}

fn service(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "security" => &[SECURITY],
        "system" => &["system"],
        "application" => &["application"],
        "sysmon" => &[SYSMON],
        "powershell" => &[PS_OPERATIONAL, PS_CORE],
        "powershell-classic" => &[PS_CLASSIC],
        "taskscheduler" => &["microsoft-windows-taskscheduler/operational"],
        "wmi" => &["microsoft-windows-wmi-activity/operational"],
        "windefend" => &["microsoft-windows-windows defender/operational"],
        "codeintegrity-operational" => &["microsoft-windows-codeintegrity/operational"],
        "appxdeployment-server" => &["microsoft-windows-appxdeploymentserver/operational"],
        "appxpackaging-om" => &["microsoft-windows-appxpackaging/operational"],
        "appmodel-runtime" => &["microsoft-windows-appmodel-runtime/admin"],
        "firewall-as" => &["microsoft-windows-windows firewall with advanced security/firewall"],
        "msexchange-management" => &["msexchange management"],
        "bits-client" => &["microsoft-windows-bits-client/operational"],
        "dns-client" => &["microsoft-windows-dns client events/operational"],
        "dns-server" => &["dns server"],
        "dns-server-analytic" => &["microsoft-windows-dns-server/analytical"],
        "iis-configuration" => &["microsoft-iis-configuration/operational"],
        "ntlm" => &["microsoft-windows-ntlm/operational"],
        "security-mitigations" => &[
            "microsoft-windows-security-mitigations/kernel mode",
            "microsoft-windows-security-mitigations/user mode",
        ],
        "applocker" => &[
            "microsoft-windows-applocker/msi and script",
            "microsoft-windows-applocker/exe and dll",
            "microsoft-windows-applocker/packaged app-deployment",
            "microsoft-windows-applocker/packaged app-execution",
        ],
        "microsoft-servicebus-client" => &["microsoft-servicebus-client"],
        "terminalservices-localsessionmanager" => {
            &["microsoft-windows-terminalservices-localsessionmanager/operational"]
        }
        "shell-core" => &["microsoft-windows-shell-core/operational"],
        "certificateservicesclient-lifecycle-system" => {
            &["microsoft-windows-certificateservicesclient-lifecycle-system/operational"]
        }
        "driver-framework" => &["microsoft-windows-driverframeworks-usermode/operational"],
        "ldap" => &["microsoft-windows-ldap-client/debug"],
        "smbclient-security" => &["microsoft-windows-smbclient/security"],
        "smbclient-connectivity" => &["microsoft-windows-smbclient/connectivity"],
        "smbserver-connectivity" => &["microsoft-windows-smbserver/connectivity"],
        "diagnosis-scripted" => &["microsoft-windows-diagnosis-scripted/operational"],
        "lsa-server" => &["microsoft-windows-lsa/operational"],
        "openssh" => &["openssh/operational"],
        "capi2" => &["microsoft-windows-capi2/operational"],
        "printservice-admin" => &["microsoft-windows-printservice/admin"],
        "printservice-operational" => &["microsoft-windows-printservice/operational"],
        "vhdmp" => &["microsoft-windows-vhdmp-operational"],
        "kernel-shimengine" => &["microsoft-windows-kernel-shimengine/operational"],
        "hyper-v-worker" => &["microsoft-windows-hyper-v-worker"],
        "ocsp" => &["microsoft-windows-online-responder/operational"],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(product: &str, category: &str, service: &str) -> LogSource {
        LogSource {
            product: product.into(),
            category: category.into(),
            service: service.into(),
        }
    }

    #[test]
    fn categories_and_services_route_to_channels() {
        let routes = ls("windows", "process_creation", "")
            .routes()
            .expect("ok")
            .expect("routes");
        assert_eq!(routes, vec![r(SYSMON, &[1]), r(SECURITY, &[4688])]);
        let routes = ls("windows", "", "security").routes().expect("ok").expect("routes");
        assert_eq!(routes, vec![r(SECURITY, &[])]);
        assert_eq!(ls("windows", "", "").routes(), Ok(None));
        assert!(ls("windows", "file_access", "").routes().unwrap_err().contains("ETW"));
        assert!(
            ls("linux", "process_creation", "")
                .routes()
                .unwrap_err()
                .contains("not a Windows")
        );
    }
}
