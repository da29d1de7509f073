"""The SQL of the Agora NCS webhook: one call records a notice and its presence effect."""

from __future__ import annotations

RECORD = "select orchestrator.record_ncs_notice($1, $2, $3, $4, $5, $6, $7, $8::jsonb)"
