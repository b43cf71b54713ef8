"""Fake external APIs, served for real on 127.0.0.1 (tests, drills, demo)."""
