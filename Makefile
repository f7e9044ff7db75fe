# Shortcuts for the two commands in README.md.
.PHONY: book test setup
setup:
	bash tools/setup.sh
book:
	bash tools/book.sh
test:
	bash tools/test.sh
