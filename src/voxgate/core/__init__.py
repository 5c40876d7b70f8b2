"""The synthesis core: request types and the one service every dialect calls."""
