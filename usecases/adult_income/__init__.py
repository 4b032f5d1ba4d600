"""Adult income (US Census, 1994): does a person earn more than 50K a year (an eligibility-style decision)."""
