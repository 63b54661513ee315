//! Alibaba Cloud call failures as the `acr` and `sas` scanners report them.

use crate::cloud::alibaba::error::RpcError;
use crate::domain::scan_error::ScanError;

/// The scanner error for the engine: permission and credential problems are
/// `Config` (an operator must act), the rest `Unavailable`.
pub fn scan_error(error: RpcError, scanner: &'static str) -> ScanError {
    let config = |message| ScanError::Config { scanner, message };
    let unavailable = |message| ScanError::Unavailable { scanner, message };
    match error {
        RpcError::Api(e) if e.is_credential() => config(format!(
            "{}; the access key, secret or security token was rejected (or the clock is off)",
            e.describe()
        )),
        RpcError::Api(e) if e.is_permission() => {
            let action = e
                .auth_action
                .clone()
                .unwrap_or_else(|| e.ram_action.to_string());
            config(format!(
                "{}; grant the RAM permission {action} to the credentials vulngate uses",
                e.describe()
            ))
        }
        RpcError::Api(e) if e.is_risk_control() => config(format!(
            "{}; refused by Alibaba Cloud risk control, not for a missing RAM permission: \
             check the account's security notices or ask Alibaba Cloud support",
            e.describe()
        )),
        RpcError::Api(e) if e.is_server_fault() || e.is_throttling() || e.is_nonce_reused() => {
            unavailable(e.describe())
        }
        RpcError::Api(e) => config(format!("{}; the request was refused", e.describe())),
        RpcError::Credentials(e) if e.config => config(format!("credentials: {}", e.message)),
        other => unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::alibaba::error::example_api_error;

    fn api_error(status: u16, code: &str) -> RpcError {
        RpcError::Api(example_api_error(status, code))
    }

    #[test]
    fn permission_problems_name_the_action_and_faults_are_unavailable() {
        match scan_error(api_error(403, "Forbidden.RAM"), "acr") {
            ScanError::Config { message, .. } => {
                assert!(
                    message.contains("cr:GetScanCount") && message.contains("RID-1"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            scan_error(api_error(500, "InternalError"), "acr"),
            ScanError::Unavailable { .. }
        ));
    }
}
