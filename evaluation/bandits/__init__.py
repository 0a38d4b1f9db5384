"""Policy-family experiments: one environment protocol, one runner, the chapter's worlds."""
