"""COPY FROM STDIN / TO STDOUT: the statement, the data formats, and the rows' way in and out."""
