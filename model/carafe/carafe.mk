# Placeholder: the CARAFE plugin's rules (plugin, test-carafe, bench-carafe, cuda-check) go here.
.PHONY: plugin test-carafe bench-carafe
plugin:
test-carafe:
bench-carafe:
