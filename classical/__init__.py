"""qlite.classical"""
