//! The last good JWKS document of each issuer (SPEC §6 "Restart-proof").

use super::{RevocationStore, StoreError};

impl RevocationStore {
    /// Keeps the last good JWKS document of `issuer` (durably).
    pub async fn save_jwks(&self, issuer: &str, jwks: &[u8]) -> Result<(), StoreError> {
        let h = self.handles()?;
        h.trees
            .jwks
            .insert(issuer.as_bytes(), jwks)
            .map_err(|e| self.failed(e.into()))?;
        self.wrote();
        self.flush().await
    }

    /// The last good JWKS document of `issuer`, if one was saved.
    pub fn load_jwks(&self, issuer: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let h = self.handles()?;
        Ok(h.trees.jwks.get(issuer.as_bytes())?.map(|v| v.to_vec()))
    }
}
