"""The metric bench: how well reward metrics agree with human judgements."""
