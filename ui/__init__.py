"""Streamlit helpers shared by streamlit_app.py and the pages (UI only; logic lives in core/)."""
