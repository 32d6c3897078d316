"""Graded suite of Assignment 2: SegFormer's modules and transfer learning."""
