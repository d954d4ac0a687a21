/**
 * A fresh id of the default generator: a UUID version 7 (RFC 9562) — version nibble `7`, variant
 * bits `10`, lowercase hex.
 */
export const DEFAULT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
