# The two commands of the README: `make demo` (main job on the local stack) and `make test`.
.PHONY: install demo test lint up down status bench

install:
	./install.sh

demo: install
	.venv/bin/opsflow demo

test: install
	.venv/bin/pytest -q --durations=15

lint: install
	.venv/bin/ruff check .
	.venv/bin/mypy .

up: install
	.venv/bin/opsflow up

down:
	.venv/bin/opsflow down

status:
	.venv/bin/opsflow status

bench: install
	.venv/bin/python benchmarks/stack_startup.py
