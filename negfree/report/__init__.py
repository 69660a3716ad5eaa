"""Tables and figures built only from files under results/ (and the loss code, for analytic figures)."""
