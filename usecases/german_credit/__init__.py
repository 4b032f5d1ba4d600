"""German credit (Statlog, 1994): approve or decline a credit application."""
