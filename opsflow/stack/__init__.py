"""The local stack: real components on 127.0.0.1 under OPSFLOW_HOME (opsflow up / down / status)."""
