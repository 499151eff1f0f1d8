"""The admin API: flags, score history, adjustments, suspensions — each change audited."""
