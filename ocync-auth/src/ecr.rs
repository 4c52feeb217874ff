//! Amazon ECR and ECR Public: registry credentials from `GetAuthorizationToken` through the AWS
//! SDK's credential chain, and the control-plane calls the data plane uses.
//!
//! - [`EcrRegistry`]: account, region, partition, FIPS and dual-stack from a registry host.
//! - [`EcrOptions`]: profile, region, endpoint and FIPS overrides, or a ready SDK config.
//! - [`EcrProvider`] (`"ecr"`) and [`EcrPublicProvider`] (`"ecr-public"`): the
//!   [`CredentialProvider`](crate::CredentialProvider)s.
//! - [`EcrApi`]: `BatchCheckLayerAvailability`, `CreateRepository`, `DescribeRepositories`.

mod api;
mod cache;
mod failure;
mod options;
mod provider;
mod public;
mod registry;
mod sdk;

pub use api::EcrApi;
pub use options::EcrOptions;
pub use provider::EcrProvider;
pub use public::EcrPublicProvider;
pub use registry::EcrRegistry;
