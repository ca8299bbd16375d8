"""Commands and what only people read: the argument parser, the closing table, the report
(tables and plots) and the results DataFrame. A thin layer over the layers below."""
