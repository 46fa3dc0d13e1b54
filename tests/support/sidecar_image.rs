//! The sidecar image as the tests get it: built the documented offline way
//! (`deploy/build-local.sh`) from the test's own logjail binary and the local Debian base that
//! `scripts/test-images` makes, and removed from the machine's engine when dropped (also after
//! a failure).

use std::path::Path;
use std::process::Command;

use super::docker_cli;

/// Where `scripts/test-images` puts Debian bookworm with the runtime's packages.
pub const BASE_IMAGE: &str = "logjail-test/debian:bookworm";

/// A built image, by tag.
pub struct SidecarImage {
    pub tag: String,
}

impl SidecarImage {
    pub fn build(tag: impl Into<String>) -> SidecarImage {
        let image = SidecarImage { tag: tag.into() };
        let output =
            Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/build-local.sh"))
                .args([
                    "--binary",
                    env!("CARGO_BIN_EXE_logjail"),
                    "--base",
                    BASE_IMAGE,
                ])
                .args(["--tag", &image.tag])
                .env("DOCKER", docker_cli())
                .output()
                .unwrap();
        assert!(
            output.status.success(),
            "image build failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        image
    }
}

impl Drop for SidecarImage {
    fn drop(&mut self) {
        let _ = Command::new(docker_cli())
            .args(["image", "rm", "-f", &self.tag])
            .output();
    }
}
