"""qlite"""
